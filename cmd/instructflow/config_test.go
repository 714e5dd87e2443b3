package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// clearEnv removes every INSTRUCTFLOW_* variable for the test (make test
// sets them for the integration tests), restoring them afterwards.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		name, val, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "INSTRUCTFLOW_") {
			t.Setenv(name, val)
			os.Unsetenv(name)
		}
	}
}

// showConfig runs `instructflow [args] config show` and returns its output.
func showConfig(t *testing.T, args ...string) (map[string]map[string]any, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(append(args, "config", "show"))
	if err := root.ExecuteContext(context.Background()); err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("config show printed invalid YAML: %v\n%s", err, out.String())
	}
	m := map[string]map[string]any{}
	for k, v := range raw {
		if sec, ok := v.(map[string]any); ok {
			m[k] = sec
		}
	}
	if strings.Contains(out.String(), "instructflow-secret") || strings.Contains(out.String(), "file-password") {
		t.Errorf("config show printed a secret:\n%s", out.String())
	}
	return m, nil
}

func TestConfigPrecedence(t *testing.T) {
	clearEnv(t)
	file := filepath.Join(t.TempDir(), "instructflow.yaml")
	os.WriteFile(file, []byte(`
temporal:
  namespace: from-file
  task_queue: from-file
  address: 10.0.0.1:7233
postgres:
  url: postgres://u:file-password@db:5432/x
`), 0o644)
	t.Setenv("INSTRUCTFLOW_TEMPORAL_TASK_QUEUE", "from-env")
	t.Setenv("INSTRUCTFLOW_TEMPORAL_ADDRESS", "10.0.0.2:7233")
	m, err := showConfig(t, "--config", file, "--temporal-address", "10.0.0.3:7233")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"namespace":  "from-file",     // file over default
		"task_queue": "from-env",      // env over file
		"address":    "10.0.0.3:7233", // flag over env
	} {
		if got := m["temporal"][key]; got != want {
			t.Errorf("temporal.%s = %v, want %q", key, got, want)
		}
	}
	if got := m["s3"]["bucket"]; got != "instructflow" {
		t.Errorf("s3.bucket = %v, want the default", got)
	}
	if got := m["postgres"]["url"]; got != "postgres://u:REDACTED@db:5432/x" {
		t.Errorf("postgres.url = %v, want the password redacted", got)
	}
	if got := m["s3"]["secret_key"]; got != "REDACTED" {
		t.Errorf("s3.secret_key = %v, want REDACTED", got)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		f := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".yaml")
		os.WriteFile(f, []byte(body), 0o644)
		return f
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args func() []string
		want []string
	}{
		{"unknown file key", nil, func() []string { return []string{"-c", write("s3:\n  buckett: x\n")} },
			[]string{`unknown key "s3.buckett"`, `did you mean "s3.bucket"`}},
		{"unknown env var", map[string]string{"INSTRUCTFLOW_S3_BUKET": "x"}, func() []string { return nil },
			[]string{"INSTRUCTFLOW_S3_BUKET", `did you mean "INSTRUCTFLOW_S3_BUCKET"`}},
		{"missing file", nil, func() []string { return []string{"-c", filepath.Join(dir, "nope.yaml")} },
			[]string{"nope.yaml"}},
		{"bad port", nil, func() []string { return []string{"--temporal-ui-port", "70000"} },
			[]string{"temporal.ui_port", "INSTRUCTFLOW_TEMPORAL_UI_PORT", "1-65535"}},
		{"bad endpoint", map[string]string{"INSTRUCTFLOW_S3_ENDPOINT": "ftp://x:1"}, func() []string { return nil },
			[]string{"s3.endpoint", "http://"}},
		{"bad postgres url", nil, func() []string { return []string{"--postgres-url", "mysql://x"} },
			[]string{"postgres.url", "postgres://user:password@host"}},
		{"bad bucket", nil, func() []string { return []string{"--s3-bucket", "Bad_Bucket"} },
			[]string{"s3.bucket", "lower-case"}},
		{"not a number", nil, func() []string { return []string{"-c", write("temporal:\n  ui_port: lots\n")} },
			[]string{"ui_port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := showConfig(t, tc.args()...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
