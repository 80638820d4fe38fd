package metrics

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// series is one exposed sample: histograms are spread into their _bucket
// (with le), _sum and _count series, as PromQL sees them.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// key renders s as name{a="x",b="y"} with sorted label names.
func (s series) key() string {
	names := make([]string, 0, len(s.labels))
	for n := range s.labels {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%q", n, s.labels[n])
	}
	return s.name + "{" + strings.Join(parts, ",") + "}"
}

// gatherSeries gathers g and flattens the result into series.
func gatherSeries(t *testing.T, g prometheus.Gatherer) []series {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return flatten(mfs)
}

func flatten(mfs []*dto.MetricFamily) []series {
	var out []series
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			with := func(k, v string) map[string]string {
				c := make(map[string]string, len(labels)+1)
				for n, x := range labels {
					c[n] = x
				}
				c[k] = v
				return c
			}
			name := mf.GetName()
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out = append(out, series{name, labels, m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				out = append(out, series{name, labels, m.GetGauge().GetValue()})
			case dto.MetricType_UNTYPED:
				out = append(out, series{name, labels, m.GetUntyped().GetValue()})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue // added below from the count
					}
					out = append(out, series{name + "_bucket", with("le", formatLe(b.GetUpperBound())), float64(b.GetCumulativeCount())})
				}
				out = append(out, series{name + "_bucket", with("le", "+Inf"), float64(h.GetSampleCount())})
				out = append(out, series{name + "_sum", labels, h.GetSampleSum()})
				out = append(out, series{name + "_count", labels, float64(h.GetSampleCount())})
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					out = append(out, series{name, with("quantile", fmt.Sprint(q.GetQuantile())), q.GetValue()})
				}
				out = append(out, series{name + "_sum", labels, s.GetSampleSum()})
				out = append(out, series{name + "_count", labels, float64(s.GetSampleCount())})
			}
		}
	}
	return out
}

func formatLe(b float64) string {
	if math.IsInf(b, 1) {
		return "+Inf"
	}
	return fmt.Sprint(b)
}

// valueMap indexes series by key.
func valueMap(ss []series) map[string]float64 {
	m := make(map[string]float64, len(ss))
	for _, s := range ss {
		m[s.key()] = s.value
	}
	return m
}
