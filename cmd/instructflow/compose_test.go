package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/instructflow/instructflow/config"
)

// TestComposeAgreesWithConfigDefaults parses docker-compose.yml and checks
// that a CLI with default configuration reaches every service it publishes,
// and that the worker's environment is a valid configuration pointing at the
// compose services with the same credentials.
func TestComposeAgreesWithConfigDefaults(t *testing.T) {
	clearEnv(t)
	root, _ := filepath.Abs("../..")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithName("instructflow"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	for _, name := range []string{"postgres", "temporal", "temporal-ui", "minio", "worker"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s missing", name)
		}
	}
	def := config.Default()
	pgURL, _ := url.Parse(def.Postgres.URL)
	s3URL, _ := url.Parse(def.S3.Endpoint)
	tPort, _ := config.HostPort(def.Temporal.Address)
	pgPort, _ := strconv.Atoi(pgURL.Port())
	s3Port, _ := strconv.Atoi(s3URL.Port())
	published := map[string]int{"postgres": pgPort, "temporal": tPort, "temporal-ui": def.Temporal.UIPort, "minio": s3Port}
	for svc, port := range published {
		s, err := p.GetService(svc)
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == strconv.Itoa(port) }) {
			t.Errorf("service %s does not publish port %d that the default config uses", svc, port)
		}
	}

	pg, _ := p.GetService("postgres")
	pass, _ := pgURL.User.Password()
	wantPG := map[string]string{"POSTGRES_USER": pgURL.User.Username(), "POSTGRES_PASSWORD": pass, "POSTGRES_DB": pgURL.Path[1:]}
	for k, want := range wantPG {
		if got := env(pg, k); got != want {
			t.Errorf("postgres %s = %q, default config uses %q", k, got, want)
		}
	}
	minio, _ := p.GetService("minio")
	if env(minio, "MINIO_ROOT_USER") != def.S3.AccessKey || env(minio, "MINIO_ROOT_PASSWORD") != def.S3.SecretKey {
		t.Errorf("minio credentials differ from s3.access_key/s3.secret_key defaults")
	}

	// The worker's environment: only known keys, valid, pointing at the services.
	w, _ := p.GetService("worker")
	if w.Build == nil {
		t.Error("worker has no build (Dockerfile)")
	} else if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Error("Dockerfile missing")
	}
	known := map[string]bool{}
	for k := range config.Defaults() {
		known[config.EnvName(k)] = true
	}
	for k := range w.Environment {
		if !known[k] {
			t.Errorf("worker sets unknown variable %s", k)
		}
		t.Setenv(k, env(w, k))
	}
	m, err := showConfig(t)
	if err != nil {
		t.Fatalf("the worker's environment is not a valid config: %v", err)
	}
	for _, c := range []struct{ section, key, want string }{
		{"temporal", "address", "temporal:" + strconv.Itoa(tPort)},
		{"temporal", "namespace", def.Temporal.Namespace},
		{"temporal", "task_queue", def.Temporal.TaskQueue},
		{"postgres", "url", "postgres://" + pgURL.User.Username() + ":REDACTED@postgres:" + pgURL.Port() + pgURL.Path + "?" + pgURL.RawQuery},
		{"s3", "endpoint", "http://minio:" + s3URL.Port()},
		{"s3", "bucket", def.S3.Bucket},
		{"s3", "access_key", def.S3.AccessKey},
	} {
		if got := m[c.section][c.key]; got != c.want {
			t.Errorf("worker %s.%s = %v, want %v", c.section, c.key, got, c.want)
		}
	}
	if env(w, "INSTRUCTFLOW_S3_SECRET_KEY") != def.S3.SecretKey {
		t.Error("worker's s3 secret differs from minio's root password")
	}
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}
