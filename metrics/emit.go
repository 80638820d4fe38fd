package metrics

import (
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// emitter turns snapshot values into constant metrics. A value that cannot
// be exposed (a label value that is not UTF-8, a malformed histogram)
// becomes an invalid metric: the scrape reports the error and, with
// promhttp.ContinueOnError, still serves every other series.
type emitter struct {
	ch chan<- prometheus.Metric
}

func (e emitter) send(d *prometheus.Desc, m prometheus.Metric, err error) {
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

func (e emitter) invalid(d *prometheus.Desc, err error) {
	e.ch <- prometheus.NewInvalidMetric(d, err)
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
	e.send(d, m, err)
}

func (e emitter) counter(d *prometheus.Desc, v uint64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	e.send(d, m, err)
}

// labeled emits one counter per label value: every value of known (0 when
// the map lacks it), then any other value the map holds, in sorted order.
// prefix holds the label values that come before the keyed one.
func (e emitter) labeled(d *prometheus.Desc, m map[string]uint64, known []string, prefix ...string) {
	lv := append(slices.Clip(prefix), "")
	last := len(lv) - 1
	for _, k := range known {
		lv[last] = k
		e.counter(d, m[k], lv...)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(known, k) {
			continue
		}
		lv[last] = k
		e.counter(d, m[k], lv...)
	}
}

// histogram emits h with cumulative buckets. An empty snapshot (no Counts)
// is exposed over stats.DefaultBuckets with zero counts, so the bucket
// series exist before the first observation.
func (e emitter) histogram(d *prometheus.Desc, h stats.HistogramSnapshot, labels ...string) {
	h, err := normalizeHist(h)
	if err != nil {
		e.invalid(d, err)
		return
	}
	buckets := make(map[float64]uint64, len(h.Bounds))
	var acc uint64
	for i, b := range h.Bounds {
		acc += h.Counts[i]
		buckets[b] = acc
	}
	m, err := prometheus.NewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
	e.send(d, m, err)
}

// normalizeHist returns h with Bounds and Counts filled in, or an error when
// they do not fit together.
func normalizeHist(h stats.HistogramSnapshot) (stats.HistogramSnapshot, error) {
	if len(h.Counts) == 0 {
		if h.Count != 0 {
			return h, fmt.Errorf("histogram has count %d but no buckets", h.Count)
		}
		if h.Bounds == nil {
			h.Bounds = stats.DefaultBuckets
		}
		h.Counts = make([]uint64, len(h.Bounds)+1)
		return h, nil
	}
	if len(h.Counts) != len(h.Bounds)+1 {
		return h, fmt.Errorf("histogram has %d bounds and %d bucket counts, want bounds+1", len(h.Bounds), len(h.Counts))
	}
	return h, nil
}
