package batch

import (
	"encoding/json"
	"math"
	"slices"
)

// RewardStats summarises the final rewards of a set of images.
type RewardStats struct {
	Count  int     `json:"count"`
	Mean   float64 `json:"mean"`
	Std    float64 `json:"std"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// imageStats counts the image files of records and summarises their rewards (nil when no image
// has one).
func imageStats(records []*Record) (int, *RewardStats) {
	images := 0
	var rs []float64
	for _, r := range records {
		for _, f := range r.Files {
			if f.Kind != KindImage {
				continue
			}
			images++
			if f.Reward != nil && !math.IsNaN(*f.Reward) {
				rs = append(rs, *f.Reward)
			}
		}
	}
	return images, rewardStats(rs)
}

// rewardStats is the count, mean, population standard deviation, min, median and max of rs.
func rewardStats(rs []float64) *RewardStats {
	if len(rs) == 0 {
		return nil
	}
	s := slices.Clone(rs)
	slices.Sort(s)
	st := &RewardStats{Count: len(s), Min: s[0], Max: s[len(s)-1]}
	if n := len(s); n%2 == 1 {
		st.Median = s[n/2]
	} else {
		st.Median = (s[n/2-1] + s[n/2]) / 2
	}
	var sum float64
	for _, v := range s {
		sum += v
	}
	st.Mean = sum / float64(len(s))
	var ss float64
	for _, v := range s {
		ss += (v - st.Mean) * (v - st.Mean)
	}
	st.Std = math.Sqrt(ss / float64(len(s)))
	return st
}

func writeSummary(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(data, '\n'))
}
