package bench

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws throughput, ingest latency p99 and memory over the run
// as a PNG.
func WritePlot(r *Result, path string) error {
	through := plot.New()
	through.Title.Text = fmt.Sprintf("Throughput (offered %s)", rateText(r.OfferedRate))
	through.Y.Label.Text = "spans/s"
	var accepted, kept plotter.XYs
	for i := 1; i < len(r.Samples); i++ {
		a, b := r.Samples[i-1], r.Samples[i]
		dt := (b.At - a.At).Seconds()
		if dt <= 0 {
			continue
		}
		x := b.At.Seconds()
		accepted = append(accepted, plotter.XY{X: x, Y: float64(b.SpansSent-a.SpansSent) / dt})
		kept = append(kept, plotter.XY{X: x, Y: float64(b.SpansKept-a.SpansKept) / dt})
	}
	if err := addLines(through, series{"accepted by the engine", accepted}, series{"kept (at the sink)", kept}); err != nil {
		return err
	}

	lat := plot.New()
	lat.Title.Text = "Ingest RPC latency p99"
	lat.Y.Label.Text = "ms"
	var p99 plotter.XYs
	for s, d := range r.IngestP99ByS {
		p99 = append(p99, plotter.XY{X: float64(s) + 0.5, Y: float64(d.Microseconds()) / 1000})
	}
	if err := addLines(lat, series{"p99 per second", p99}); err != nil {
		return err
	}

	mem := plot.New()
	mem.Title.Text = "Memory"
	mem.Y.Label.Text = "MiB"
	mem.X.Label.Text = "seconds since the start of the run"
	var heap, rss, buf plotter.XYs
	for _, s := range r.Samples {
		x := s.At.Seconds()
		heap = append(heap, plotter.XY{X: x, Y: float64(s.HeapBytes) / (1 << 20)})
		rss = append(rss, plotter.XY{X: x, Y: float64(s.RSSBytes) / (1 << 20)})
		buf = append(buf, plotter.XY{X: x, Y: float64(s.BufferBytes) / (1 << 20)})
	}
	if err := addLines(mem, series{"process live heap", heap}, series{"process RSS", rss}, series{"buffer (accounted)", buf}); err != nil {
		return err
	}

	const width, height = 20 * vg.Centimeter, 24 * vg.Centimeter
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3,
		PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3, PadY: vg.Millimeter * 6}
	plots := [][]*plot.Plot{{through}, {lat}, {mem}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// series is one named line of a plot.
type series struct {
	name string
	pts  plotter.XYs
}

// addLines adds each series as a line with a legend entry.
func addLines(p *plot.Plot, lines ...series) error {
	for i, s := range lines {
		if len(s.pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.pts)
		if err != nil {
			return err
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return nil
}

func rateText(r float64) string {
	if r == 0 {
		return "max rate"
	}
	return fmt.Sprintf("%.0f spans/s", r)
}
