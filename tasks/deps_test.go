package tasks

import (
	"os/exec"
	"strings"
	"testing"
)

// Nothing in the production path imports the demo: the pipeline's packages
// and the binary reach the demo task only through this package's Task.
func TestProductionDoesNotImportDemo(t *testing.T) {
	const demo = "github.com/instructflow/instructflow/demo"
	for _, pkg := range []string{"activities", "runspec", "workflows", "control", "modelstore", "cmd/instructflow"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/instructflow/instructflow/"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == demo {
				t.Errorf("%s imports %s", pkg, demo)
			}
		}
	}
}
