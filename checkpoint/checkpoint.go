// Package checkpoint is the one checkpoint format: <prefix><step>/ holds a
// checkpoint's files and manifest.json (the size and SHA-256 of each file),
// written last. A checkpoint without a manifest does not exist, and loading
// verifies every file against it, never returning bytes that do not match.
//
// The format lives here once, over Blobs, a small interface a backend
// implements by moving bytes only: the object store (storage/objectstore),
// a local folder (Folder) and memory (blobtest.Memory, for unit tests).
// Store implements stage.Sink, so a trainer saves and resumes through it
// without knowing where its checkpoints go.
package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage"
)

// Blobs moves bytes under keys. A missing key is errkind.NotFound.
type Blobs interface {
	Put(ctx context.Context, key string, data []byte) error
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns every key that starts with prefix, at any depth.
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
}

// ManifestName is the file that commits a checkpoint. It is written last.
const ManifestName = "manifest.json"

// Limits on what loading reads, so that a damaged or hostile store cannot
// make a worker allocate without bound: a manifest is small, and no file
// is read past the size its manifest gives.
const (
	MaxManifestBytes = 1 << 20
	MaxFileBytes     = 64 << 30
	maxFiles         = 1024
)

// format is the manifest format Save writes. Format 1 (storage/objectstore
// before the format moved here) named its checkpoint as "ref"; it is read.
const format = 2

// Manifest lists a checkpoint's files with their sizes and hashes. It holds
// no time stamp, so the same checkpoint always has the same manifest, and
// its SHA-256 identifies the checkpoint's whole content.
type Manifest struct {
	Format int     `json:"format"`
	Step   int64   `json:"step"`
	Files  []Entry `json:"files"` // sorted by name

	Ref *struct {
		Step int64 `json:"step"`
	} `json:"ref,omitempty"` // format 1 only
}

// Entry describes one file.
type Entry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// maxSize bounds a file by its kind: JSON files (config.json, state.json)
// are small; tensors may be large.
func maxSize(name string) int64 {
	if strings.HasSuffix(name, ".json") {
		return MaxManifestBytes
	}
	return MaxFileBytes
}

var fileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func validName(name string) bool {
	return fileName.MatchString(name) && name != ManifestName && !strings.Contains(name, "..")
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Store keeps the checkpoints of one stage under Prefix in Blobs. The zero
// Verify and Log do nothing.
type Store struct {
	Blobs Blobs
	// Prefix ends in "/" (or is empty): runs/<run>/<stage>/.
	Prefix string
	// Verify, when set, checks a committed checkpoint's manifest hash
	// against a record kept elsewhere (Postgres), before any file is read;
	// an error of kind Corrupt makes it damaged: Latest falls back, and Save
	// may replace it.
	Verify func(ctx context.Context, step int64, manifestSHA string) error
	// Log, when set, hears of every committed checkpoint Latest skips.
	Log func(msg string)
}

// Key is the object key of a checkpoint's folder.
func (s Store) Key(step int64) string { return s.Prefix + strconv.FormatInt(step, 10) + "/" }

// Save implements stage.Sink: it writes the files, then the manifest that
// commits them, and returns the manifest's SHA-256. Saving a checkpoint that
// is committed with the same content (a retried activity) rewrites only
// what no longer matches; a committed checkpoint that is good (it loads and
// Verify accepts it) with other content is refused, as committed checkpoints
// never change. A damaged or refused one, which Latest skips, is replaced.
// Any other error while looking at the old one (an unreachable store) is
// returned: nothing is replaced on a doubt.
func (s Store) Save(ctx context.Context, step int64, files []stage.File) (string, error) {
	if step < 0 {
		return "", fmt.Errorf("checkpoint: save %s: step %d: steps start at 0", s.Prefix, step)
	}
	dir := s.Key(step)
	raw, err := ManifestOf(step, files)
	if err != nil {
		return "", fmt.Errorf("checkpoint: save %s: %w", dir, err)
	}
	id := sha(raw)

	old, err := s.check(ctx, step)
	switch {
	case err == nil && old.ID == id:
		return id, nil
	case err == nil:
		return "", fmt.Errorf("checkpoint: save %s: a committed checkpoint with other content exists; committed checkpoints never change: %w", dir, errkind.Conflict)
	case errors.Is(err, errNoManifest):
	case damaged(err):
		// Uncommit it first, so no reader pairs its manifest with new files.
		if err := s.Blobs.Delete(ctx, dir+ManifestName); err != nil {
			return "", fmt.Errorf("checkpoint: save %s: %w", dir, err)
		}
	default:
		return "", fmt.Errorf("checkpoint: save %s: %w", dir, err)
	}
	for _, f := range files {
		if err := s.Blobs.Put(ctx, dir+f.Name, f.Data); err != nil {
			return "", fmt.Errorf("checkpoint: save %s: %w", dir, err)
		}
	}
	if err := s.Blobs.Put(ctx, dir+ManifestName, raw); err != nil {
		return "", fmt.Errorf("checkpoint: save %s: %w", dir, err)
	}
	return id, nil
}

// ManifestOf is the manifest that commits files as the checkpoint of step:
// what Save writes, and whose SHA-256 is the checkpoint's id.
func ManifestOf(step int64, files []stage.File) ([]byte, error) {
	m := Manifest{Format: format, Step: step}
	if len(files) > maxFiles {
		return nil, fmt.Errorf("%d files, more than a checkpoint holds (%d): %w", len(files), maxFiles, errkind.BadInput)
	}
	for _, f := range files {
		if !validName(f.Name) {
			return nil, fmt.Errorf("invalid file name %q", f.Name)
		}
		if int64(len(f.Data)) > maxSize(f.Name) { // loading would refuse it
			return nil, fmt.Errorf("file %s has %d bytes, more than a checkpoint's %s file may (%d): %w", f.Name, len(f.Data), filepath.Ext(f.Name), maxSize(f.Name), errkind.BadInput)
		}
		sum := sha256.Sum256(f.Data)
		m.Files = append(m.Files, Entry{Name: f.Name, Size: int64(len(f.Data)), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(m.Files, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(m.Files); i++ {
		if m.Files[i].Name == m.Files[i-1].Name {
			return nil, fmt.Errorf("file %q given twice", m.Files[i].Name)
		}
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

// damaged: a committed checkpoint that must not be used, and may be
// replaced: its bytes do not match (Corrupt) or its record (Verify).
func damaged(err error) bool { return errors.Is(err, errkind.Corrupt) }

// Steps returns the committed steps (those with a manifest), oldest first.
// Folders without a manifest (a save that crashed) are left out.
func (s Store) Steps(ctx context.Context) ([]int64, error) {
	keys, err := s.Blobs.List(ctx, s.Prefix)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", s.Prefix, err)
	}
	var steps []int64
	for _, k := range keys {
		rest, ok := strings.CutSuffix(strings.TrimPrefix(k, s.Prefix), "/"+ManifestName)
		if !ok {
			continue
		}
		if step, err := strconv.ParseInt(rest, 10, 64); err == nil && step >= 0 && strconv.FormatInt(step, 10) == rest {
			steps = append(steps, step)
		}
	}
	slices.Sort(steps)
	return steps, nil
}

// Latest implements stage.Sink: the newest committed checkpoint that is
// good. A damaged one, or one Verify refuses, is skipped, logged, for the
// one before it: resuming from an older checkpoint costs time, never
// correctness. Errors other than damage (an unreachable store) are returned.
func (s Store) Latest(ctx context.Context) (stage.Checkpoint, bool, error) {
	steps, err := s.Steps(ctx)
	if err != nil {
		return stage.Checkpoint{}, false, err
	}
	for i := len(steps) - 1; i >= 0; i-- {
		cp, err := s.check(ctx, steps[i])
		switch {
		case err == nil:
			return cp, true, nil
		case damaged(err) || errors.Is(err, errNoManifest): // errNoManifest: deleted since the listing
			if s.Log != nil {
				s.Log(fmt.Sprintf("skipping checkpoint %s: %v", s.Key(steps[i]), err))
			}
		default:
			return stage.Checkpoint{}, false, err
		}
	}
	return stage.Checkpoint{}, false, nil
}

// Load reads the checkpoint committed at step and verifies the size and
// SHA-256 of every file. No manifest is errkind.NotFound; a missing,
// truncated, over-long or altered file, or a manifest that cannot be read
// or names another step, is errkind.Corrupt, and no bytes are returned.
// Load does not ask Verify: a payload names the hash it expects.
func (s Store) Load(ctx context.Context, step int64) (stage.Checkpoint, error) {
	return s.load(ctx, step, nil, nil)
}

// LoadFiles is Load reading only the files for which want is true (the
// tokenizer of a model, not its weights): each is verified against the
// manifest, and the checkpoint's ID is the manifest's hash as for Load. A
// wanted file the manifest does not list is simply absent from Files.
func (s Store) LoadFiles(ctx context.Context, step int64, want func(name string) bool) (stage.Checkpoint, error) {
	return s.load(ctx, step, nil, want)
}

// check is Load with Verify asked about the manifest before any file is
// read: the one test of "this committed step is good" that Latest and Save
// share.
func (s Store) check(ctx context.Context, step int64) (stage.Checkpoint, error) {
	return s.load(ctx, step, s.Verify, nil)
}

var errNoManifest = fmt.Errorf("no manifest, so it was never committed: %w", errkind.NotFound)

func (s Store) load(ctx context.Context, step int64, verify func(context.Context, int64, string) error, want func(string) bool) (stage.Checkpoint, error) {
	dir := s.Key(step)
	raw, err := ReadBlob(ctx, s.Blobs, dir+ManifestName, MaxManifestBytes)
	if errors.Is(err, errkind.NotFound) {
		return stage.Checkpoint{}, fmt.Errorf("checkpoint: load %s: %w", dir, errNoManifest)
	}
	if err != nil {
		return stage.Checkpoint{}, fmt.Errorf("checkpoint: load %s: %w", dir, err)
	}
	if verify != nil {
		if err := verify(ctx, step, sha(raw)); err != nil {
			return stage.Checkpoint{}, fmt.Errorf("checkpoint: %s: %w", dir, err)
		}
	}
	return s.verify(ctx, dir, step, raw, want)
}

// verify reads the files a manifest lists (those want accepts, or all when
// it is nil) and checks each against it.
func (s Store) verify(ctx context.Context, dir string, step int64, raw []byte, want func(string) bool) (stage.Checkpoint, error) {
	m, err := parseManifest(dir, step, raw)
	if err != nil {
		return stage.Checkpoint{}, err
	}
	cp := stage.Checkpoint{Step: m.Step, Files: make(map[string][]byte, len(m.Files)), ID: sha(raw)}
	for _, e := range m.Files {
		if want != nil && !want(e.Name) {
			continue
		}
		data, err := ReadBlob(ctx, s.Blobs, dir+e.Name, e.Size)
		switch {
		case errors.Is(err, errkind.NotFound):
			return stage.Checkpoint{}, fmt.Errorf("checkpoint: load %s: file %s is missing: %w", dir, e.Name, errkind.Corrupt)
		case errors.Is(err, errTooLong):
			return stage.Checkpoint{}, fmt.Errorf("checkpoint: load %s: file %s is longer than the %d bytes its manifest gives: %w", dir, e.Name, e.Size, err)
		case err != nil:
			return stage.Checkpoint{}, fmt.Errorf("checkpoint: load %s: %w", dir, err)
		}
		if got := sha(data); int64(len(data)) != e.Size || got != e.SHA256 {
			return stage.Checkpoint{}, fmt.Errorf("checkpoint: load %s: file %s has %d bytes with SHA-256 %.12s, manifest says %d bytes with %.12s: %w",
				dir, e.Name, len(data), got, e.Size, e.SHA256, errkind.Corrupt)
		}
		cp.Files[e.Name] = data
	}
	return cp, nil
}

// parseManifest decodes the manifest of the checkpoint folder dir at step
// and checks it: a known format, this step, valid and distinct entries.
func parseManifest(dir string, step int64, raw []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Files) > maxFiles {
		return Manifest{}, fmt.Errorf("checkpoint: load %s: manifest is unreadable: %w", dir, errkind.Corrupt)
	}
	switch {
	case m.Format == format:
	case m.Format == 1 && m.Ref != nil: // written before format 2, by storage/objectstore
		m.Step = m.Ref.Step
	case m.Format > format:
		return Manifest{}, fmt.Errorf("checkpoint: load %s: manifest format %d: written by a newer InstructFlow; upgrade this worker", dir, m.Format)
	default:
		return Manifest{}, fmt.Errorf("checkpoint: load %s: manifest format %d is not one InstructFlow writes: %w", dir, m.Format, errkind.Corrupt)
	}
	if m.Step != step {
		return Manifest{}, fmt.Errorf("checkpoint: load %s: manifest names step %d: %w", dir, m.Step, errkind.Corrupt)
	}
	seen := make(map[string]bool, len(m.Files))
	for _, e := range m.Files {
		if !validName(e.Name) || e.Size < 0 || e.Size > maxSize(e.Name) || !hexSHA.MatchString(e.SHA256) {
			return Manifest{}, fmt.Errorf("checkpoint: load %s: manifest entry %q is invalid: %w", dir, e.Name, errkind.Corrupt)
		}
		if seen[e.Name] {
			return Manifest{}, fmt.Errorf("checkpoint: load %s: manifest lists %s twice: %w", dir, e.Name, errkind.Corrupt)
		}
		seen[e.Name] = true
	}
	return m, nil
}

// OpenFile opens one file of the checkpoint committed at step, to be read
// as a stream (a model's weights, without holding a copy of them), once the
// manifest's SHA-256 is checked to be manifestSHA. The reader checks the
// file against its manifest entry as it goes: at the end, a file that is
// shorter, longer or has other bytes returns an error of kind Corrupt
// instead of io.EOF, so what was read is trusted only once io.EOF came. A
// checkpoint or file that does not exist is errkind.NotFound.
func (s Store) OpenFile(ctx context.Context, step int64, name, manifestSHA string) (io.ReadCloser, error) {
	dir := s.Key(step)
	raw, err := ReadBlob(ctx, s.Blobs, dir+ManifestName, MaxManifestBytes)
	if errors.Is(err, errkind.NotFound) {
		return nil, fmt.Errorf("checkpoint: open %s%s: %w", dir, name, errNoManifest)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s%s: %w", dir, name, err)
	}
	if id := sha(raw); id != manifestSHA {
		return nil, fmt.Errorf("checkpoint: open %s%s: manifest SHA-256 %.12s, expected %.12s: %w", dir, name, id, manifestSHA, errkind.Corrupt)
	}
	m, err := parseManifest(dir, step, raw)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(m.Files, func(e Entry) bool { return e.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("checkpoint: open %s%s: the manifest lists no such file: %w", dir, name, errkind.NotFound)
	}
	r, err := s.Blobs.Open(ctx, dir+name)
	if errors.Is(err, errkind.NotFound) {
		return nil, fmt.Errorf("checkpoint: open %s%s: the file is missing: %w", dir, name, errkind.Corrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s%s: %w", dir, name, err)
	}
	return &checkedReader{rc: r, r: io.LimitReader(r, m.Files[i].Size+1), h: sha256.New(), want: m.Files[i], key: dir + name}, nil
}

// checkedReader reads a file and checks its size and SHA-256 at the end.
type checkedReader struct {
	rc   io.ReadCloser
	r    io.Reader
	h    hash.Hash
	n    int64
	want Entry
	key  string
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.want.Size {
		return n, fmt.Errorf("checkpoint: read %s: longer than the %d bytes its manifest gives: %w", c.key, c.want.Size, errkind.Corrupt)
	}
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); c.n != c.want.Size || got != c.want.SHA256 {
			return n, fmt.Errorf("checkpoint: read %s: %d bytes with SHA-256 %.12s, manifest says %d bytes with %.12s: %w",
				c.key, c.n, got, c.want.Size, c.want.SHA256, errkind.Corrupt)
		}
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.rc.Close() }

var errTooLong = fmt.Errorf("longer than allowed: %w", errkind.Corrupt)

// ReadBlob reads a blob of at most limit bytes; a longer one is errTooLong
// (after reading limit+1 bytes, never the whole blob). Up to 256 MiB the
// buffer is allocated at once at the size expected, so a model file is not
// copied while it grows; past that it grows as it is read, so a manifest
// that claims more than the blob holds costs no more than the blob.
func ReadBlob(ctx context.Context, b Blobs, key string, limit int64) ([]byte, error) {
	r, err := b.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(limit, 256<<20)+bytes.MinRead))
	_, err = buf.ReadFrom(io.LimitReader(r, limit+1))
	data := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", key, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("checkpoint: read %s: %w", key, errTooLong)
	}
	return data, nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// StagePrefix is where a run's stage keeps its checkpoints:
// runs/<run>/<stage>/. Both ids are validated, so no key can leave it.
func StagePrefix(run, stageName string) (string, error) {
	for _, id := range [][2]string{{"run", run}, {"stage", stageName}} {
		if err := storage.ValidateID(id[0], id[1]); err != nil {
			return "", fmt.Errorf("checkpoint: %w", err)
		}
	}
	return stagePrefix(run, stageName), nil
}

// StageKey is the folder of a run's stage's checkpoint at step (ids as
// validated by StagePrefix).
func StageKey(run, stageName string, step int64) string {
	return Store{Prefix: stagePrefix(run, stageName)}.Key(step)
}

func stagePrefix(run, stageName string) string { return "runs/" + run + "/" + stageName + "/" }

// ModelPrefix is where an imported model keeps its one checkpoint (step 0):
// models/<name>/. The name is validated, so no key can leave it.
func ModelPrefix(name string) (string, error) {
	if err := storage.ValidateID("model", name); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return "models/" + name + "/", nil
}
