package clip

import (
	"strings"
	"sync"
)

// endOfWord marks the last symbol of a word in CLIP's vocabulary ("cat</w>" vs "cat").
const endOfWord = "</w>"

// byteToUnicode is GPT-2's bytes_to_unicode: printable Latin-1 bytes ('!'..'~', '¡'..'¬',
// '®'..'ÿ') stand for themselves and the other 68 bytes, in order, for U+0100 onwards, so
// that every byte is one printable rune of the vocabulary's alphabet.
var byteToUnicode = func() (m [256]rune) {
	n := rune(0)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			m[b] = rune(b)
		} else {
			m[b] = 256 + n
			n++
		}
	}
	return m
}()

// runeToByte inverts byteToUnicode; -1 marks runes outside the byte alphabet.
var runeToByte = func() (m [256 + 68]int16) {
	for i := range m {
		m[i] = -1
	}
	for b, r := range byteToUnicode {
		m[r] = int16(b)
	}
	return m
}()

// unicodeToByte returns the byte that rune r of the byte alphabet stands for.
func unicodeToByte(r rune) (byte, bool) {
	if r < 0 || int(r) >= len(runeToByte) || runeToByte[r] < 0 {
		return 0, false
	}
	return byte(runeToByte[r]), true
}

// merge is one line of merges.txt: its rank (lower merges first) and the merged token's id.
type merge struct{ rank, id int32 }

// pairKey packs the ids of two adjacent symbols into a map key.
func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// wordIDs returns the BPE ids of one pre-tokenised word (raw UTF-8, not yet in the byte
// alphabet). The caller must not modify the slice: it may be shared through the cache.
func (t *Tokenizer) wordIDs(word string) []int {
	if len(word) == 1 {
		b := int(word[0])
		return t.byteEndID[b : b+1]
	}
	if ids, ok := t.cache.get(word); ok {
		return ids
	}
	ids := t.bpe(word)
	t.cache.put(word, ids)
	return ids
}

// symbol is one node of the doubly linked list of a word's current symbols; a merged-away
// node has id -1.
type symbol struct{ id, prev, next int32 }

// candidate is a possible merge of the symbol at pos with its right neighbour.
type candidate struct{ rank, pos, id int32 }

// bpe runs Hugging Face's BPE merge loop (tokenizers' Word::merge_all) on one word: start
// from one symbol per byte, the last with </w>, and repeatedly merge the adjacent pair of
// lowest rank, leftmost first, until no pair is in merges.txt. A priority queue of
// candidates with lazy deletion keeps it O(n log n) in the word's length. For a merges file
// in training order this equals CLIP's original loop, which merges every occurrence of the
// best pair at once.
func (t *Tokenizer) bpe(word string) []int {
	n := len(word)
	syms := make([]symbol, n)
	for i := range n {
		syms[i] = symbol{id: int32(t.byteID[word[i]]), prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[n-1].id, syms[n-1].next = int32(t.byteEndID[word[n-1]]), -1

	q := make(queue, 0, n)
	for i := range n - 1 {
		if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			q.push(candidate{m.rank, int32(i), m.id})
		}
	}
	for len(q) > 0 {
		c := q.pop()
		s := &syms[c.pos]
		if s.id < 0 || s.next < 0 {
			continue // merged away, or now last
		}
		right := syms[s.next]
		if m, ok := t.merges[pairKey(s.id, right.id)]; !ok || m.id != c.id {
			continue // stale: a neighbour changed since c was queued
		}
		syms[s.next].id = -1
		s.id, s.next = c.id, right.next
		if s.next >= 0 {
			syms[s.next].prev = c.pos
			if m, ok := t.merges[pairKey(s.id, syms[s.next].id)]; ok {
				q.push(candidate{m.rank, c.pos, m.id})
			}
		}
		if s.prev >= 0 {
			if m, ok := t.merges[pairKey(syms[s.prev].id, s.id)]; ok {
				q.push(candidate{m.rank, s.prev, m.id})
			}
		}
	}

	ids := make([]int, 0, 4)
	for i := int32(0); i >= 0; i = syms[i].next {
		ids = append(ids, int(syms[i].id))
	}
	return ids
}

// queue is a binary min-heap of candidates by (rank, pos).
type queue []candidate

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || c.rank == d.rank && c.pos < d.pos
}

func (q *queue) push(c candidate) {
	h := append(*q, c)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	*q = h
}

func (q *queue) pop() candidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(h) && h[l].less(h[small]) {
			small = l
		}
		if r := l + 1; r < len(h) && h[r].less(h[small]) {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	*q = h
	return top
}

// Word cache limits, as in Hugging Face's BPE: at most cacheEntries words, each shorter than
// cacheMaxWord bytes. A full cache stops taking new words rather than evicting, so a flood of
// unique words costs memory once and never churns.
const (
	cacheEntries = 10000
	cacheMaxWord = 256
)

// wordCache maps a word to its BPE ids; the slices it holds are never modified.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int
}

func newWordCache() *wordCache { return &wordCache{m: make(map[string][]int)} }

func (c *wordCache) get(word string) ([]int, bool) {
	c.mu.RLock()
	ids, ok := c.m[word]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(word string, ids []int) {
	if len(word) >= cacheMaxWord {
		return
	}
	c.mu.Lock()
	if len(c.m) < cacheEntries {
		c.m[strings.Clone(word)] = ids // word may share memory with a whole prompt
	}
	c.mu.Unlock()
}
