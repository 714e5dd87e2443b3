// Package printer is how every command prints its result: as text, or as
// JSON when the user asks for it (`--output json`, or its alias `--json`).
// A command hands over the value and its text layout; it never branches on
// the format itself, so every result is available as JSON the same way.
package printer

import (
	"encoding/json"
	"fmt"
	"io"
)

// Format is how results are printed.
type Format string

// The formats.
const (
	Text Format = "text"
	JSON Format = "json"
)

// ParseFormat checks an --output value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Text, JSON:
		return f, nil
	}
	return "", fmt.Errorf("--output %q: use text or json", s)
}

// Printer prints results to W in Format.
type Printer struct {
	W      io.Writer
	Format Format
}

// Print writes v as indented JSON, or, as text, what text writes.
func (p Printer) Print(v any, text func(w io.Writer) error) error {
	if p.Format == JSON {
		enc := json.NewEncoder(p.W)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return text(p.W)
}
