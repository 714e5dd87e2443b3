// Package objectstore is the S3-compatible backend of checkpoint.Blobs
// (versitygw locally, MinIO or any S3 in deployment). It only moves bytes:
// the checkpoint format and its verification live in package checkpoint.
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
	"github.com/instructflow/instructflow/errkind"
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
		return fmt.Errorf("%w: %w", errkind.Unavailable, err)
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

// Open reads one object; a missing key is errkind.NotFound.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.mc.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("objectstore: get %s: %w", key, translate(err))
	}
	// GetObject is lazy: Stat sends the request, so a missing key is known here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, fmt.Errorf("objectstore: get %s: %w", key, translate(err))
	}
	return obj, nil
}

// Delete removes one object; deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.mc.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("objectstore: delete %s: %w", key, explain(err))
	}
	return nil
}

// List returns every key under prefix, at any depth.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for obj := range s.mc.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("objectstore: list %s: %w", prefix, explain(obj.Err))
		}
		keys = append(keys, obj.Key)
	}
	return keys, nil
}

func translate(err error) error {
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return errkind.NotFound
	}
	return explain(err)
}
