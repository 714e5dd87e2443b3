package config

import (
	"fmt"
	"strings"

	"github.com/instructflow/instructflow/internal/editdist"
)

// Suggest returns ` (did you mean "x"?)` when a known name is close to name.
func Suggest(name string, known []string) string {
	best, bestDist := "", 4
	for _, k := range known {
		if d := editdist.Distance(strings.ToLower(name), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
