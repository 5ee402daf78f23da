//go:build !linux

package update

import "os"

func syncDrop(f *os.File) error { return f.Sync() }

func rereadPartitions(*os.File) error { return nil }

func devNumber(os.FileInfo) (string, bool) { return "", false }
