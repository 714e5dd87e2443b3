package devstack

import (
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
)

// PostgresBinDir is where Debian's postgresql-15 package puts its programs.
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

type binaries struct {
	postgres  string // the directory holding postgres and initdb
	temporal  string
	versitygw string
}

// findBinaries locates the three servers, or says how to install what is
// missing.
func findBinaries() (binaries, error) {
	var b binaries
	var errs []error
	if _, err := os.Stat(filepath.Join(PostgresBinDir, "postgres")); err != nil {
		errs = append(errs, fmt.Errorf("devstack: Postgres 15 not found in %s; install it with `make deps` (apt-get install postgresql)", PostgresBinDir))
	}
	b.postgres = PostgresBinDir
	var err error
	if b.temporal, err = goBinary("temporal"); err != nil {
		errs = append(errs, fmt.Errorf("devstack: %w; install it with `make deps` (go install github.com/temporalio/cli/cmd/temporal@v1.5.1)", err))
	}
	if b.versitygw, err = goBinary("versitygw"); err != nil {
		errs = append(errs, fmt.Errorf("devstack: %w; install it with `make deps` (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", err))
	}
	return b, errors.Join(errs...)
}

// goBinary finds a program installed by `go install`: in GOBIN, GOPATH/bin,
// then PATH.
func goBinary(name string) (string, error) {
	dirs := []string{os.Getenv("GOBIN"), filepath.Join(build.Default.GOPATH, "bin")}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in %s or PATH", name, filepath.Join(build.Default.GOPATH, "bin"))
}
