package objectstore

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/checkpoint/blobtest"
	"github.com/instructflow/instructflow/internal/testenv"
)

// openFresh opens a new bucket on the real object store for one test.
func openFresh(t *testing.T) *Store {
	t.Helper()
	cfg := testenv.Config(t)
	name := testenv.Name(t)
	if len(name) > 30 {
		name = name[:30]
	}
	cfg.S3.Bucket = strings.Trim(fmt.Sprintf("t-%s-%d", name, time.Now().UnixNano()), "-")
	s, err := Open(context.Background(), cfg.S3)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestContract runs the backend and checkpoint-format contracts on S3.
func TestContract(t *testing.T) {
	s := openFresh(t)
	// Each subtest gets its own prefix in the one bucket.
	n := 0
	newBlobs := func(*testing.T) checkpoint.Blobs { n++; return prefixed{s, fmt.Sprintf("t%d/", n)} }
	blobtest.Blobs(t, newBlobs)
	blobtest.Store(t, newBlobs)
}

// prefixed puts a test's keys under a prefix of their own.
type prefixed struct {
	*Store
	prefix string
}

func (p prefixed) Put(ctx context.Context, key string, data []byte) error {
	return p.Store.Put(ctx, p.prefix+key, data)
}

func (p prefixed) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return p.Store.Open(ctx, p.prefix+key)
}

func (p prefixed) Delete(ctx context.Context, key string) error {
	return p.Store.Delete(ctx, p.prefix+key)
}

func (p prefixed) List(ctx context.Context, prefix string) ([]string, error) {
	keys, err := p.Store.List(ctx, p.prefix+prefix)
	for i := range keys {
		keys[i] = strings.TrimPrefix(keys[i], p.prefix)
	}
	return keys, err
}

func TestBadCredentials(t *testing.T) {
	cfg := testenv.Config(t)
	cfg.S3.SecretKey = "wrong-secret"
	_, err := Open(context.Background(), cfg.S3)
	if err == nil || !strings.Contains(err.Error(), "check s3.access_key and s3.secret_key") {
		t.Fatalf("Open with a wrong secret: %v, want a message naming the credentials", err)
	}
}
