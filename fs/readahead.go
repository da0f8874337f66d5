package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SetReadAhead sets read_ahead_kb of the mount at dir through its bdi,
// /sys/class/bdi/MAJOR:MINOR (the mount's st_dev). Mount calls it with
// Options.Tuning.ReadAheadKB; the bench uses it to try other values.
//
// The kernel read-ahead mpcfs asks for on its mount (Tuning.ReadAheadKB).
// The kernel offers a FUSE mount 128 KiB (its default for any device) and
// the init reply can only lower it, so a reader's 1 MiB read() of a cold
// segment becomes eight 128 KiB FUSE requests, each a round trip through
// the daemon. The mount's device (bdi) setting lifts it: with 1 MiB the
// kernel asks for 1 MiB at a time, up to our 1 MiB request size: fewer
// round trips, less CPU per GB in the daemon and the reader.
// Only root may change it; others keep the kernel's, with a log line.
func SetReadAhead(dir string, kb int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	dev, err := mountDevice(abs)
	if err != nil {
		return err
	}
	p := filepath.Join("/sys/class/bdi", dev, "read_ahead_kb")
	if err := os.WriteFile(p, []byte(fmt.Sprint(kb)), 0); err != nil {
		return fmt.Errorf("setting %s: %w", p, err)
	}
	return nil
}

// mountDevice returns MAJOR:MINOR of the mount at dir, from
// /proc/self/mountinfo (the last mount there wins: ours, on top).
func mountDevice(dir string) (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	return parseMountDevice(string(data), dir)
}

func parseMountDevice(mountinfo, dir string) (string, error) {
	// mountinfo escapes space, tab, newline and backslash in octal.
	esc := strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`).Replace(dir)
	dev := ""
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == esc {
			dev = f[2]
		}
	}
	if dev == "" {
		return "", fmt.Errorf("%s is not in /proc/self/mountinfo", dir)
	}
	return dev, nil
}
