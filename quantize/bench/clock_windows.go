//go:build windows

package bench

import (
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Go's monotonic clock on Windows advances with the timer interrupt
// (15.6 ms by default, 0.5-1 ms at best): a run faster than that measures 0.
// The performance counter resolves well under a microsecond.
var (
	procQPC  = windows.NewLazySystemDLL("kernel32.dll").NewProc("QueryPerformanceCounter")
	procQPF  = windows.NewLazySystemDLL("kernel32.dll").NewProc("QueryPerformanceFrequency")
	qpcFreq  int64
	qpcReady = func() bool {
		r, _, _ := procQPF.Call(uintptr(unsafe.Pointer(&qpcFreq)))
		return r != 0 && qpcFreq > 0
	}()
)

type clockStamp struct {
	qpc int64
	t   time.Time
}

func clockNow() clockStamp {
	var c int64
	if qpcReady {
		procQPC.Call(uintptr(unsafe.Pointer(&c)))
	}
	return clockStamp{qpc: c, t: time.Now()}
}

func clockSince(s clockStamp) time.Duration {
	if !qpcReady {
		return time.Since(s.t)
	}
	var c int64
	procQPC.Call(uintptr(unsafe.Pointer(&c)))
	d := c - s.qpc
	return time.Duration(d/qpcFreq)*time.Second + time.Duration(d%qpcFreq*int64(time.Second)/qpcFreq)
}
