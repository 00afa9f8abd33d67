//go:build !linux && !windows

package bench

// Peak memory, memory size and free disk are measured on Linux and Windows
// only; elsewhere they read as 0 (unknown).

func peakRSS() int64                    { return 0 }
func resetPeakRSS() bool                { return false }
func memory() (total, available uint64) { return 0, 0 }
func cpuName() string                   { return "" }
func diskFree(string) uint64            { return 0 }
