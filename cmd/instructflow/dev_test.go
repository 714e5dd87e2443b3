package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/instructflow/instructflow/devstack"
	"github.com/instructflow/instructflow/internal/testenv"
)

// startDev runs `instructflow dev --json` and returns once it is ready.
func startDev(t *testing.T, bin string, env []string) (*exec.Cmd, []devstack.Endpoint) {
	t.Helper()
	cmd := exec.Command(bin, "dev", "--json")
	cmd.Env = env
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var all strings.Builder
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "instructflow dev: ready") {
				ready <- ""
			}
		}
		ready <- all.String()
	}()
	var eps []devstack.Endpoint
	if err := json.NewDecoder(stdout).Decode(&eps); err != nil {
		t.Fatalf("dev printed no endpoints: %v\n%s", err, <-ready)
	}
	select {
	case msg := <-ready:
		if msg != "" {
			t.Fatalf("dev exited before ready:\n%s", msg)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("dev not ready after 3 minutes")
	}
	return cmd, eps
}

func TestDevStartsChecksAndStopsCleanly(t *testing.T) {
	testenv.Config(t) // integration only: needs the installed servers
	bin := testenv.BuildCLI(t)
	env, ports := testenv.PrivateStack(t)
	dev, eps := startDev(t, bin, env)

	// psql, as a user would.
	psql := exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(ports["postgres"]), "-U", "instructflow", "-d", "instructflow", "-tAc", "SELECT 41 + 1")
	psql.Env = append(env, fmt.Sprintf("PGPASSWORD=pw-%d", ports["postgres"]))
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Errorf("psql: %v %q", err, out)
	}
	// The temporal CLI.
	temporal := exec.Command(filepath.Join(build.Default.GOPATH, "bin", "temporal"), "operator", "namespace", "describe", "default",
		"--address", fmt.Sprintf("127.0.0.1:%d", ports["temporal"]))
	if out, err := temporal.CombinedOutput(); err != nil || !strings.Contains(string(out), "default") {
		t.Errorf("temporal operator namespace describe: %v\n%s", err, out)
	}
	// An S3 client.
	mc, err := minio.New(fmt.Sprintf("127.0.0.1:%d", ports["s3"]), &minio.Options{Creds: credentials.NewStaticV4("instructflow", "instructflow-secret", "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := mc.MakeBucket(ctx, "probe", minio.MakeBucketOptions{}); err != nil {
		t.Errorf("s3 make bucket: %v", err)
	}
	if _, err := mc.PutObject(ctx, "probe", "k", strings.NewReader("v"), 1, minio.PutObjectOptions{}); err != nil {
		t.Errorf("s3 put: %v", err)
	}

	// A second dev reuses the running services and, stopped, leaves them up.
	second := exec.Command(bin, "dev", "--json")
	second.Env = env
	secondOut, _ := second.StdoutPipe()
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	var eps2 []devstack.Endpoint
	if err := json.NewDecoder(secondOut).Decode(&eps2); err != nil {
		t.Fatalf("second dev: %v", err)
	}
	for i, e := range eps2 {
		if !e.Reused || e.PID != eps[i].PID {
			t.Errorf("second dev: %s not reused: %+v", e.Name, e)
		}
	}
	_ = second.Process.Signal(syscall.SIGINT)
	if err := second.Wait(); err != nil {
		t.Errorf("second dev exit: %v", err)
	}
	for _, e := range eps {
		if !alive(e.PID) {
			t.Errorf("stopping the second dev stopped %s", e.Name)
		}
	}

	// Ctrl-C stops all three; nothing is left behind.
	_ = dev.Process.Signal(syscall.SIGINT)
	if err := dev.Wait(); err != nil {
		t.Errorf("dev exit: %v", err)
	}
	for _, e := range eps {
		if alive(e.PID) {
			t.Errorf("%s (pid %d) still runs after dev stopped", e.Name, e.PID)
		}
	}
	for name, p := range ports {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err != nil {
			t.Errorf("port %d (%s) still held after dev stopped", p, name)
		} else {
			l.Close()
		}
	}
}

func TestDevRefusesAPortInUse(t *testing.T) {
	testenv.Config(t)
	bin := testenv.BuildCLI(t)
	env, ports := testenv.PrivateStack(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports["s3"]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(bin, "dev")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("dev started although the S3 port is taken")
	}
	want := fmt.Sprintf("port %d is in use by pid %d", ports["s3"], os.Getpid())
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "INSTRUCTFLOW_S3_ENDPOINT") {
		t.Errorf("message %q should contain %q and how to choose another port", out, want)
	}
	if strings.Contains(string(out), "started postgres") {
		t.Errorf("dev started services before finding the port conflict:\n%s", out)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has exited.
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}
