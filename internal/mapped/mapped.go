// Package mapped maps ranges of files read-only, where the platform can:
// reading a file through a mapping skips the copy from the page cache into
// a buffer. Callers read the bytes with debug.SetPanicOnFault on, since a
// file truncated meanwhile faults instead of returning a short read.
package mapped
