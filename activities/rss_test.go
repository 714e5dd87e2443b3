package activities

import (
	"os"
	"testing"
)

// On Linux a stage's peak RSS is measured from its start: memory touched
// before startPeakRSS and given back does not count, memory touched after
// does.
func TestPeakRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/clear_refs"); err != nil {
		t.Skip("no /proc/self/clear_refs: no peak RSS to measure")
	}
	big := make([]byte, 256<<20)
	for i := range big {
		big[i] = 1
	}
	big = nil
	hwm, ok := readVmHWM()
	if !ok {
		t.Skip("no VmHWM in /proc/self/status")
	}
	p := startPeakRSS()
	if !p.ok {
		t.Skip("clear_refs not writable here: the metric is skipped, as in production")
	}
	before := p.record(nil)["peak_rss_mb"]
	small := make([]byte, 64<<20)
	for i := range small {
		small[i] = 1
	}
	m := p.record(map[string]float64{"steps": 3})
	after := m["peak_rss_mb"]
	// Other tests of the package may hold memory of their own, so the
	// figures are compared with the peak before the reset, not with a
	// fixed size.
	if was := float64(hwm) / 1024; m["steps"] != 3 || before <= 0 || before > was-128 || after < before+50 {
		t.Errorf("peak RSS %.0f MB before the reset, %.0f MB after it (256 MB freed before it), %.0f MB after 64 MB more (metrics %v); want 128 less after the reset and then 50 more", was, before, after, m)
	}
	_ = small[len(small)-1]
	if got := (peakRSS{}).record(nil); got != nil {
		t.Errorf("unmeasured peak recorded %v", got)
	}
}
