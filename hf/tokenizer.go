package hf

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/tokenizer"
)

// readTokenizer reads the tokenizer files present in dir and builds the
// tokenizer from them.
func readTokenizer(dir string) (*tokenizer.FileBPE, map[string][]byte, problems) {
	var probs problems
	files := map[string][]byte{}
	for _, name := range tokenizer.FileNames {
		b, err := readSmall(filepath.Join(dir, name), tokenizer.MaxFileSize)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			probs.add(name, "%v; make it a readable file", err)
			continue
		}
		files[name] = b
	}
	if len(probs) > 0 {
		return nil, files, probs
	}
	tok, err := tokenizer.FromFiles(files)
	if err != nil {
		// FromFiles' messages mostly start with the file they are about.
		msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), "tokenizer: from files: "), errkind.BadInput.Error()+": ")
		for _, name := range tokenizer.FileNames {
			if strings.HasPrefix(msg, name) {
				return nil, files, append(probs, msg)
			}
		}
		probs.add("tokenizer", "%s", msg)
		return nil, files, probs
	}
	return tok, files, nil
}
