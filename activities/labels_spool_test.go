package activities

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/instructflow/instructflow/storage/postgres"
)

// The spool numbers items in order and gives them back in parts of at most
// spoolPart, then removes its file.
func TestItemSpool(t *testing.T) {
	s, err := newItemSpool()
	if err != nil {
		t.Fatal(err)
	}
	n := 2*spoolPart + 3
	for i := range n {
		if err := s.add(postgres.BatchItem{Item: -1, Prompt: fmt.Sprintf("upper w%d=", i), Responses: []string{"a", fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var parts []int
	var got []postgres.BatchItem
	if err := s.replay(func(part []postgres.BatchItem) error {
		parts = append(parts, len(part))
		got = append(got, part...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s.items != n || !slices.Equal(parts, []int{spoolPart, spoolPart, 3}) || len(got) != n {
		t.Fatalf("%d items in parts %v, want %d in parts of %d", len(got), parts, n, spoolPart)
	}
	for i, it := range got {
		if it.Item != i || it.Prompt != fmt.Sprintf("upper w%d=", i) || !slices.Equal(it.Responses, []string{"a", fmt.Sprint(i)}) {
			t.Fatalf("item %d back as %+v", i, it)
		}
	}
	stop := errors.New("stop")
	if err := s.replay(func([]postgres.BatchItem) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("replay returned %v, want add's error", err)
	}
	name := s.f.Name()
	s.close()
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("spool file %s left behind (%v)", name, err)
	}
}
