package report

import (
	"math"
	"slices"
)

// Percentile returns the p-th percentile (0 <= p <= 100) of samples by the
// nearest-rank method: the smallest sample such that at least p percent of
// the samples are less than or equal to it. p = 0 gives the minimum, p = 100
// the maximum. samples need not be sorted; it is not modified. An empty
// slice gives 0.
func Percentile(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return percentileSorted(s, p)
}

// percentileSorted is Percentile on samples sorted in ascending order.
func percentileSorted(s []float64, p float64) float64 {
	switch {
	case len(s) == 0:
		return 0
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// Latency summarises latency samples, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize computes the latency summary of samples (milliseconds). It
// sorts samples in place.
func Summarize(samples []float64) Latency {
	slices.Sort(samples)
	return Latency{
		Count: len(samples),
		P50:   percentileSorted(samples, 50),
		P99:   percentileSorted(samples, 99),
		Max:   percentileSorted(samples, 100),
	}
}

// Median returns the median of v (the mean of the two middle values for an
// even count), or 0 for an empty slice. v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
