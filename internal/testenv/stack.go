package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildCLI builds the instructflow binary for tests that run it as a user
// would, and returns its path.
func BuildCLI(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "instructflow")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/instructflow/instructflow/cmd/instructflow").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// PrivateStack returns the environment of a local stack of a test's own:
// free ports, and a fresh data dir under a 0700 folder, as root's home or
// `mktemp -d` gives (as root, the postgres user cannot enter it, so dev
// keeps the cluster elsewhere, recorded in the data dir; the cleanup
// removes that too). env is os.Environ() plus the INSTRUCTFLOW_* settings.
func PrivateStack(t testing.TB) (env []string, ports map[string]int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "instructflow-dev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postgres.location")); err == nil {
			os.RemoveAll(strings.TrimSpace(string(b)))
		}
		os.RemoveAll(dir)
	})
	ports = map[string]int{}
	for _, name := range []string{"postgres", "temporal", "ui", "s3"} {
		ports[name] = FreePort(t)
	}
	env = append(os.Environ(),
		"INSTRUCTFLOW_DATA_DIR="+filepath.Join(dir, "data"),
		fmt.Sprintf("INSTRUCTFLOW_POSTGRES_URL=postgres://instructflow:pw-%d@127.0.0.1:%d/instructflow?sslmode=disable", ports["postgres"], ports["postgres"]),
		fmt.Sprintf("INSTRUCTFLOW_POSTGRES_OWNER_URL=postgres://instructflow_owner:owner-%d@127.0.0.1:%d/instructflow?sslmode=disable", ports["postgres"], ports["postgres"]),
		fmt.Sprintf("INSTRUCTFLOW_TEMPORAL_ADDRESS=127.0.0.1:%d", ports["temporal"]),
		fmt.Sprintf("INSTRUCTFLOW_TEMPORAL_UI_PORT=%d", ports["ui"]),
		fmt.Sprintf("INSTRUCTFLOW_S3_ENDPOINT=http://127.0.0.1:%d", ports["s3"]),
	)
	return env, ports
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
