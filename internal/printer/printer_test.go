package printer

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

func TestPrint(t *testing.T) {
	v := map[string]int{"labeled": 3}
	text := func(w io.Writer) error { _, err := io.WriteString(w, "labeled 3 items\n"); return err }
	var b bytes.Buffer
	if err := (Printer{W: &b, Format: Text}).Print(v, text); err != nil || b.String() != "labeled 3 items\n" {
		t.Fatalf("text: %q, %v", b.String(), err)
	}
	b.Reset()
	var got map[string]int
	if err := (Printer{W: &b, Format: JSON}).Print(v, text); err != nil || json.Unmarshal(b.Bytes(), &got) != nil || got["labeled"] != 3 {
		t.Fatalf("json: %q, %v", b.String(), err)
	}
	for _, s := range []string{"text", "json"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("ParseFormat accepted yaml")
	}
}
