//go:build !windows

package bench

import "time"

type clockStamp = time.Time

func clockNow() clockStamp { return time.Now() }

func clockSince(s clockStamp) time.Duration { return time.Since(s) }
