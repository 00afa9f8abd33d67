// Package humanize formats quantities for people reading terminal output.
package humanize

import "fmt"

// Bytes formats n with binary units: 512 B, 1.5 KiB, 16.9 MiB, 4.1 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
