// Package objectstore keeps checkpoints in S3-compatible object storage
// (versitygw locally, MinIO or any S3 in deployment).
//
// A checkpoint lives under runs/<run>/<stage>/<step>/: its files, then
// manifest.json (size and SHA-256 of each file) written last. A checkpoint
// without a manifest does not exist; loading verifies every file against the
// manifest and never returns bytes that do not match.
package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/storage"
)

// Store is one bucket of an S3-compatible object store.
type Store struct {
	mc     *minio.Client
	bucket string
}

// Open connects to the object store, checks the credentials and creates the
// bucket if it is missing.
func Open(ctx context.Context, cfg config.S3) (*Store, error) {
	host, secure, err := cfg.HostAndTLS()
	if err != nil {
		return nil, fmt.Errorf("objectstore: s3.endpoint: %w", err)
	}
	mc, err := minio.New(host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("objectstore: client for %s: %w", cfg.Endpoint, err)
	}
	s := &Store{mc: mc, bucket: cfg.Bucket}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	exists, err := mc.BucketExists(cctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("objectstore: open bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, explain(err))
	}
	if !exists {
		err := mc.MakeBucket(cctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			return nil, fmt.Errorf("objectstore: create bucket %s: %w", cfg.Bucket, explain(err))
		}
	}
	return s, nil
}

// explain adds the fix to the errors users hit most.
func explain(err error) error {
	var netErr net.Error
	switch code := minio.ToErrorResponse(err).Code; {
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "AccessDenied":
		return fmt.Errorf("%w (check s3.access_key and s3.secret_key)", err)
	case errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused"):
		return fmt.Errorf("%w (is the object store running? start the local stack with `instructflow dev`)", err)
	}
	return err
}

// Put writes one object.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	_, err := s.mc.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("objectstore: put %s: %w", key, explain(err))
	}
	return nil
}

// Get reads one object; a missing key is storage.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	obj, err := s.mc.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("objectstore: get %s: %w", key, translate(err))
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, fmt.Errorf("objectstore: get %s: %w", key, translate(err))
	}
	return b, nil
}

// Delete removes one object; deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.mc.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("objectstore: delete %s: %w", key, explain(err))
	}
	return nil
}

// list returns the keys (or, with a delimiter, the common prefixes) under
// prefix.
func (s *Store) list(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	var keys []string
	for obj := range s.mc.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("objectstore: list %s: %w", prefix, explain(obj.Err))
		}
		keys = append(keys, obj.Key)
	}
	return keys, nil
}

func translate(err error) error {
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return storage.ErrNotFound
	}
	return explain(err)
}
