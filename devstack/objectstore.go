package devstack

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// newObjectStore describes versitygw serving S3 from the folder
// DataDir/s3 (its posix backend: one directory per bucket).
func newObjectStore(opts Options, bin string) *service {
	dir := filepath.Join(opts.DataDir, "s3")
	addr := "127.0.0.1:" + strconv.Itoa(opts.S3Port)
	s := &service{
		name:     "s3",
		ports:    []int{opts.S3Port},
		exe:      bin,
		dir:      dir,
		pidFile:  filepath.Join(opts.DataDir, "versitygw.pid"),
		writePID: true,
		logFile:  filepath.Join(opts.DataDir, "logs", "versitygw.log"),
		stopSig:  syscall.SIGTERM,
		timeout:  30 * time.Second,
		hint: func(int) string {
			return "choose another port in s3.endpoint (INSTRUCTFLOW_S3_ENDPOINT or --s3-endpoint)"
		},
	}
	s.prepare = func(context.Context) error { return mkdirAll(dir) }
	s.command = func() *exec.Cmd {
		cmd := exec.Command(bin, "--port", addr, "posix", dir)
		cmd.Env = append(os.Environ(),
			"ROOT_ACCESS_KEY="+opts.S3AccessKey,
			"ROOT_SECRET_KEY="+opts.S3SecretKey,
		)
		return cmd
	}
	s.ready = func(ctx context.Context) error {
		mc, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(opts.S3AccessKey, opts.S3SecretKey, "")})
		if err != nil {
			return permanent(err)
		}
		_, err = mc.ListBuckets(ctx)
		if resp := minio.ToErrorResponse(err); resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" {
			return permanent(err)
		}
		return err
	}
	return s
}

// mkdirAll creates dir and its missing parents private to this user (0700):
// the data dir holds credentials, labels and checkpoints.
func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o700) }
