package stats

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	h.Observe(50 * time.Microsecond) // first bucket
	h.Observe(time.Millisecond)      // exactly on a bound: le=0.001
	h.Observe(2 * time.Millisecond)  // le=0.0025
	h.Observe(2 * time.Minute)       // +Inf
	s := h.Snapshot()
	if s.Count != 4 {
		t.Fatalf("count = %d", s.Count)
	}
	if got, want := s.Sum, 120.00305; math.Abs(got-want) > 1e-9 {
		t.Errorf("sum = %v, want %v", got, want)
	}
	c := s.Cumulative()
	if c[0.0001] != 1 || c[0.001] != 2 || c[0.0025] != 3 || c[60] != 3 {
		t.Errorf("cumulative = %v", c)
	}
	if s.Counts[len(s.Counts)-1] != 1 {
		t.Errorf("+Inf bucket = %d", s.Counts[len(s.Counts)-1])
	}
	if q := s.Quantile(0.5); q <= 0.00025 || q > 0.001 {
		t.Errorf("p50 = %v", q)
	}
	if q := s.Quantile(1); q != 60 {
		t.Errorf("p100 = %v, want the highest finite bound", q)
	}
	if !math.IsNaN((HistogramSnapshot{}).Quantile(0.5)) {
		t.Error("empty quantile is not NaN")
	}
	m := HistogramSnapshot{}.Merge(s).Merge(s)
	if m.Count != 8 || m.Counts[0] != 2 || s.Counts[0] != 1 {
		t.Errorf("merge: %+v (source %+v)", m, s)
	}
}

func TestBucketsMatchArray(t *testing.T) {
	var h Histogram
	if len(h.counts) != len(DefaultBuckets)+1 {
		t.Fatalf("counts has %d slots for %d buckets", len(h.counts), len(DefaultBuckets))
	}
	for i := 1; i < len(DefaultBuckets); i++ {
		if DefaultBuckets[i] <= DefaultBuckets[i-1] {
			t.Fatalf("buckets not ascending at %d", i)
		}
	}
}

func TestTenantConcurrent(t *testing.T) {
	var tn Tenant
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				tn.Queries.Add(1)
				tn.Rejections.Inc(RejectPoolTimeout)
				tn.QueryDuration.Observe(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var ts TenantSnapshot
	tn.Counters(&ts)
	if ts.Queries != 8000 || ts.Rejections[RejectPoolTimeout] != 8000 || ts.QueryDuration.Count != 8000 {
		t.Errorf("snapshot = %+v", ts)
	}
	ts.Rejections["x"] = 1 // a snapshot is a copy
	if tn.Rejections.Get("x") != 0 {
		t.Error("snapshot aliases the live map")
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i%5000) * time.Microsecond)
	}
}
