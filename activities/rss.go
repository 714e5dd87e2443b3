package activities

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
)

// peakRSS measures a stage's peak resident memory through Linux's /proc:
// writing "5" to /proc/self/clear_refs resets the process's high-water mark
// (VmHWM in /proc/self/status) to its current RSS.
//
// The figure is the process's, not the stage's alone: with the default
// worker.max_concurrent_stages of 1 a worker computes one stage at a time,
// so it is the stage's (plus the worker's own baseline); with more, stages
// computing side by side share it (so do other runs' stages that compute
// while a labels stage waits for people). Where /proc cannot be read or written
// (not Linux, a locked-down container) there is no figure, and no error.
type peakRSS struct{ ok bool }

// startPeakRSS returns the garbage of earlier stages to the OS (so that it
// does not count against this one) and resets the high-water mark.
func startPeakRSS() peakRSS {
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return peakRSS{}
	}
	_, ok := readVmHWM()
	return peakRSS{ok: ok}
}

// record sets metrics["peak_rss_mb"] to the peak RSS in MiB since
// startPeakRSS, when it was measured; it returns metrics (a new map when
// nil).
func (p peakRSS) record(metrics map[string]float64) map[string]float64 {
	if !p.ok {
		return metrics
	}
	kb, ok := readVmHWM()
	if !ok {
		return metrics
	}
	if metrics == nil {
		metrics = map[string]float64{}
	}
	metrics["peak_rss_mb"] = float64(kb) / 1024
	return metrics
}

// readVmHWM reads the process's peak RSS in KiB from /proc/self/status.
func readVmHWM() (int64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, found := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:"))
		if !found {
			continue
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
		return kb, err == nil
	}
	return 0, false
}
