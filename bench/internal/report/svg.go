package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strings"
)

// BarChart is a grouped bar chart: one group per category along the x
// axis, one bar per series in each group.
type BarChart struct {
	Title  string
	Unit   string   // label of the y axis
	Series []string // legend; each group has one bar per series
	Groups []BarGroup
	// Ref draws a dashed horizontal line at this value (a goal), labelled
	// RefLabel; 0 draws nothing.
	Ref      float64
	RefLabel string
	Note     string // one line under the chart
}

// BarGroup is one category of the x axis.
type BarGroup struct {
	Label string
	Bars  []Bar // one per series
}

// Bar is one value. A bar with Missing set is not drawn; the text is shown
// in its place ("n/a", "not supported").
type Bar struct {
	Value   float64
	Missing string
	// Marks are individual measurements (rounds) drawn as short ticks
	// over the bar, so the spread is visible next to the median.
	Marks []float64
}

// Chart geometry, in SVG user units (pixels).
const (
	chartWidth   = 760
	chartHeight  = 380
	marginLeft   = 78
	marginRight  = 24
	marginTop    = 64
	marginBottom = 78
)

// palette holds the series colours (colour-blind friendly, after Okabe-Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"}

// SVG renders the chart as a standalone SVG document.
func (c BarChart) SVG() []byte {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	plotW := float64(chartWidth - marginLeft - marginRight)
	plotH := float64(chartHeight - marginTop - marginBottom)
	x0, y0 := float64(marginLeft), float64(marginTop)+plotH // origin, bottom left

	top := c.Ref
	for _, g := range c.Groups {
		for _, bar := range g.Bars {
			if bar.Missing == "" {
				top = math.Max(top, bar.Value)
				for _, m := range bar.Marks {
					top = math.Max(top, m)
				}
			}
		}
	}
	step, ymax := niceScale(top)
	yOf := func(v float64) float64 { return y0 - v/ymax*plotH }

	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	w("<title>%s</title>\n", esc(c.Title))
	w(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	w(`<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.Title))

	// Legend, only when there is more than one series.
	if len(c.Series) > 1 {
		lx := float64(marginLeft)
		for i, s := range c.Series {
			w(`<rect x="%.1f" y="34" width="12" height="12" fill="%s"/>`, lx, palette[i%len(palette)])
			w(`<text x="%.1f" y="44">%s</text>`+"\n", lx+16, esc(s))
			lx += 28 + 7*float64(len([]rune(s)))
		}
	}

	// Axes and grid.
	decimals := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	for i := 0; float64(i)*step <= ymax*(1+1e-9); i++ {
		v := float64(i) * step
		y := yOf(v)
		label := fmt.Sprintf("%.*f", decimals, v)
		if v >= 1000 {
			label = FormatNumber(v)
		}
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`, x0, y, x0+plotW, y)
		w(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, label)
	}
	w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x0, y0, x0+plotW, y0)
	w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x0, y0, x0, y0-plotH)
	w(`<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", y0-plotH/2, esc(c.Unit))

	// Bars.
	n := len(c.Groups)
	if n > 0 {
		slot := plotW / float64(n)
		nb := max(1, len(c.Series))
		barW := math.Min(64, slot*0.8/float64(nb))
		for gi, g := range c.Groups {
			gx := x0 + slot*float64(gi) + (slot-barW*float64(nb))/2
			for bi, bar := range g.Bars {
				x := gx + barW*float64(bi)
				colour := palette[bi%len(palette)]
				if len(c.Series) <= 1 {
					colour = palette[gi%len(palette)]
				}
				if bar.Missing != "" {
					// Written upwards from the axis, where the bar would be.
					w(`<text class="missing" x="%.1f" y="%.1f" fill="#777" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
						x+barW/2+4, y0-8, x+barW/2+4, y0-8, esc(bar.Missing))
					continue
				}
				y := yOf(bar.Value)
				h := y0 - y
				label := FormatNumber(bar.Value)
				w(`<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`+"\n",
					x, y, barW-2, h, colour, esc(strings.ReplaceAll(g.Label, "\n", " ")+seriesSuffix(c.Series, bi)), esc(label))
				top := bar.Value // the label goes above the bar and its round marks
				for _, m := range bar.Marks {
					top = math.Max(top, m)
				}
				w(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n", x+barW/2-1, yOf(top)-5, esc(label))
				for _, m := range bar.Marks {
					my := yOf(m)
					w(`<line class="mark" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222" stroke-width="2"/>`+"\n",
						x+barW*0.25, my, x+barW*0.75-2, my)
				}
			}
			// A label may have several lines, separated by "\n".
			lx := x0 + slot*(float64(gi)+0.5)
			w(`<text x="%.1f" y="%.1f" text-anchor="middle">`, lx, y0+18)
			for li, line := range strings.Split(g.Label, "\n") {
				dy := 0
				if li > 0 {
					dy = 14
				}
				w(`<tspan x="%.1f" dy="%d">%s</tspan>`, lx, dy, esc(line))
			}
			w("</text>\n")
		}
	}

	if c.Ref > 0 {
		y := yOf(c.Ref)
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="6 4"/>`, x0, y, x0+plotW, y)
		w(`<text x="%.1f" y="%.1f" fill="#c00">%s</text>`+"\n", x0+6, y-4, esc(c.RefLabel))
	}
	if c.Note != "" {
		w(`<text x="%d" y="%d" fill="#555" font-size="11">%s</text>`+"\n", marginLeft, chartHeight-12, esc(c.Note))
	}
	w("</svg>\n")
	return b.Bytes()
}

func seriesSuffix(series []string, i int) string {
	if len(series) <= 1 || i >= len(series) {
		return ""
	}
	return ", " + series[i]
}

// niceScale picks a tick step of 1, 2 or 5 times a power of ten so that
// about five ticks cover [0, top], and returns the step and the axis top
// (a multiple of the step, at least top).
func niceScale(top float64) (step, axisTop float64) {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		return 1, 5
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		step = mag
	case f <= 2:
		step = 2 * mag
	case f <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	axisTop = math.Ceil(top/step) * step
	if axisTop < top*1.05 { // leave room for the value labels
		axisTop += step
	}
	return step, axisTop
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
