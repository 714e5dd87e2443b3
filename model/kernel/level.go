package kernel

import (
	"fmt"
	"slices"
	"strings"
)

// Level names of the vector units the C kernels are built for, fastest last.
// A build without them (pure Go) has only Generic.
const (
	Generic = "generic" // plain x86-64, or pure Go
	AVX2    = "avx2"    // AVX2 + FMA
	AVX512  = "avx512"  // AVX-512 F, DQ and VL
)

var levelNames = []string{Generic, AVX2, AVX512}

// Level returns the name of the level the kernels use now: at start-up the
// fastest this CPU and build support.
func Level() string { return levelNames[level()] }

// Levels returns the levels this CPU and build can run, slowest first.
func Levels() []string {
	var names []string
	for _, l := range levels() {
		names = append(names, levelNames[l])
	}
	return names
}

// SetLevel makes the kernels use the named level, one of Levels(), from now
// on; "" leaves the start-up choice. It is for measuring and reproducing
// another kind of CPU: results are bit-identical run to run on one level,
// while levels round differently in the last bits. OpenBLAS picks its own
// kernels when the process starts (OPENBLAS_CORETYPE forces them; BLASCore
// names what it runs). Not safe while kernels run: call it before any work
// starts.
func SetLevel(name string) error {
	if name == "" {
		return nil
	}
	i := slices.Index(levelNames, name)
	if i < 0 || !slices.Contains(Levels(), name) {
		return fmt.Errorf("kernel level %q: this CPU and build run %s", name, strings.Join(Levels(), ", "))
	}
	setLevel(i)
	return nil
}
