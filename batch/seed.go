package batch

import "hash/fnv"

// Seed is the seed of an item's first image when the item names none: a 64-bit mix of the
// job's base seed and the item's ID. It depends on nothing else (not the item's position, shard
// or worker), so an item keeps its seed when others are added, removed or reordered around it,
// and one item can be reproduced alone with `fksteer generate --seed`. Image j of the item uses
// Seed+j, as every fksteer run does.
func Seed(base uint64, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return splitmix64(base ^ h.Sum64())
}

// splitmix64 is the finaliser of SplitMix64 (Steele, Lea and Flood 2014): a bijection on 64-bit
// words that spreads nearby inputs over the whole range.
func splitmix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
