package plots

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestDraw: a chart with recorded metrics is well-formed SVG with its
// title, axis labels and a legend entry per curve drawn; a chart none of
// whose metrics was recorded draws nothing.
func TestDraw(t *testing.T) {
	var ms []Metric
	for step := int64(10); step >= 1; step-- { // out of order: drawn by step
		ms = append(ms, Metric{Step: step, Name: "loss", Value: 3 / float64(step)})
	}
	ms = append(ms, Metric{Step: 10, Name: "heldout_loss", Value: 0.5}, Metric{Step: 10, Name: "tokens", Value: 99},
		Metric{Step: 11, Name: "loss", Value: math.NaN()}, Metric{Step: 12, Name: "loss", Value: math.Inf(1)})
	svg, ok, err := Draw(Charts[0], ms, "svg")
	if err != nil || !ok {
		t.Fatalf("SVG: %v %v", ok, err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var texts []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
			texts = append(texts, strings.TrimSpace(string(cd)))
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"SFT: cross-entropy", "step", "nats per target token", "loss (2 non-finite left out)", "heldout_loss"} {
		if !strings.Contains(all, want) {
			t.Errorf("the SVG's text lacks %q: %s", want, all)
		}
	}
	if slices.Contains(texts, "tokens") {
		t.Errorf("a metric the chart does not draw is in it: %s", all)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(svg), []byte("<?xml")) && !bytes.Contains(svg[:min(len(svg), 200)], []byte("<svg")) {
		t.Errorf("not an SVG document: %.200s", svg)
	}
	if _, ok, err := Draw(Charts[3], ms, "svg"); ok || err != nil {
		t.Errorf("a PPO chart from SFT metrics: drawn %v, %v", ok, err)
	}
}

// TestDrawPNG: the same chart as a PNG, for documents; other formats are
// refused by name.
func TestDrawPNG(t *testing.T) {
	png, ok, err := Draw(Charts[2], []Metric{{Step: 1, Name: "heldout_accuracy", Value: 0.6}}, "png")
	if err != nil || !ok || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("png: %v %v %.8q", ok, err, png)
	}
	if _, _, err := Draw(Charts[2], nil, "gif"); err == nil || !strings.Contains(err.Error(), "svg") {
		t.Errorf("a gif: %v", err)
	}
}
