package checkpoint_test

import (
	"path/filepath"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/checkpoint/blobtest"
)

func TestMemory(t *testing.T) {
	blobtest.Blobs(t, func(*testing.T) checkpoint.Blobs { return &blobtest.Memory{} })
	blobtest.Store(t, func(*testing.T) checkpoint.Blobs { return &blobtest.Memory{} })
}

func TestFolder(t *testing.T) {
	newFolder := func(t *testing.T) checkpoint.Blobs {
		return checkpoint.Folder{Path: filepath.Join(t.TempDir(), "ckpt")}
	}
	blobtest.Blobs(t, newFolder)
	blobtest.Store(t, newFolder)
}
