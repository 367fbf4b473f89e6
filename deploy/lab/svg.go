package lab

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"time"
)

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Timeline draws packets per millisecond of every flow (by arrival time)
// around the move, with the link move, the commit and each node's update
// marked, as a hand-written SVG.
func (r *Report) Timeline(w io.Writer) error {
	if r.Move == nil {
		return fmt.Errorf("timeline: no move in the report")
	}
	m := r.Move
	t0 := m.Start.Add(-150 * time.Millisecond)
	end := m.Done.Add(200 * time.Millisecond)
	for _, c := range r.Convergence {
		if c.Seen && c.Applied.Add(100*time.Millisecond).After(end) {
			end = c.Applied.Add(100 * time.Millisecond)
		}
	}
	if end.Sub(t0) > 3*time.Second {
		end = t0.Add(3 * time.Second)
	}
	ms := int(end.Sub(t0)/time.Millisecond) + 1
	const (
		left, right = 150, 30
		top         = 50
		lane        = 90
		plotW       = 1000
	)
	x := func(t time.Time) float64 {
		return left + float64(t.Sub(t0))/float64(end.Sub(t0))*plotW
	}
	height := top + lane*len(r.Flows) + 40 + 18*(len(r.Convergence)+3)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+plotW+right, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15">%s</text>`+"\n", left, esc(fmt.Sprintf("Hot move of %s from %s to %s: packets per ms (arrivals)", m.Task, m.From, m.To)))
	fmt.Fprintf(&b, `<text x="%d" y="38" fill="#555">%s</text>`+"\n", left, esc(r.Verdict))
	for i, f := range r.Flows {
		y0 := top + i*lane
		bins := make([]int, ms)
		maxv := 1
		for _, a := range f.Arrivals {
			k := int(a.Recv.Sub(t0) / time.Millisecond)
			if k >= 0 && k < ms {
				bins[k]++
				maxv = max(maxv, bins[k])
			}
		}
		fmt.Fprintf(&b, `<text x="5" y="%d">%s</text>`+"\n", y0+lane/2, esc(f.Name))
		fmt.Fprintf(&b, `<text x="5" y="%d" fill="#555">%s</text>`+"\n", y0+lane/2+15, esc(fmt.Sprintf("lost %d/%d, gap %v", f.Lost, f.Sent, time.Duration(f.LongestGap).Round(100*time.Microsecond))))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", left, y0+lane-10, left+plotW, y0+lane-10)
		bw := float64(plotW) / float64(ms)
		for k, v := range bins {
			if v == 0 {
				continue
			}
			h := float64(lane-20) * float64(v) / float64(maxv)
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="#2a7"/>`+"\n", left+float64(k)*bw, float64(y0+lane-10)-h, max(bw, 1), h)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" font-size="10">max %d/ms</text>`+"\n", left+plotW-60, y0+12, maxv)
	}
	axisY := top + lane*len(r.Flows)
	for t := time.Duration(0); t <= end.Sub(t0); t += 50 * time.Millisecond {
		xx := x(t0.Add(t))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#bbb"/>`+"\n", xx, axisY-10, xx, axisY-5)
		if t%(100*time.Millisecond) == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%+dms</text>`+"\n", xx, axisY+6, int((t0.Add(t).Sub(m.Start))/time.Millisecond))
		}
	}
	type mark struct {
		at    time.Time
		label string
		color string
	}
	marks := []mark{{m.Start, "move start", "#888"}, {m.LinkMoved, "link moved", "#06c"}, {m.Committed, "commit", "#c00"}}
	for _, c := range r.Convergence {
		if c.Seen {
			marks = append(marks, mark{c.Applied, c.Node + " updated", "#c80"})
		}
	}
	for i, mk := range marks {
		xx := x(mk.at)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4,3"/>`+"\n", xx, top, xx, axisY+20+18*i, mk.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="%s">%s</text>`+"\n", xx+3, axisY+32+18*i, mk.color, esc(fmt.Sprintf("%s (%+.1fms)", mk.label, float64(mk.at.Sub(m.Start))/1e6)))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}
