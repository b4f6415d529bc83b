// Package procstat reads what Linux's /proc says about a process: the CPU
// time it has used, its resident memory, and which process listens on a
// local TCP port. `bouncer bench` uses it to charge each contender the CPU
// it costs the whole machine (the worker, the ClickHouse server and the
// Kafka broker), which survives a noisy machine better than a wall-clock
// rate. Linux only; elsewhere every call returns an error.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel's ABI fixes
// it, whatever CONFIG_HZ is).
const clockTicks = 100

// CPU is the user plus system CPU time process pid has used so far, all
// its threads together (not its children).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// Memory is a process's resident set size now and its peak (VmRSS and
// VmHWM), in bytes.
type Memory struct{ RSS, Peak int64 }

// ReadMemory reads process pid's resident set sizes.
func ReadMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, want := range []struct {
			name string
			dst  *int64
		}{{"VmRSS:", &m.RSS}, {"VmHWM:", &m.Peak}} {
			if v, ok := strings.CutPrefix(line, want.name); ok {
				kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return Memory{}, fmt.Errorf("/proc/%d/status: %s %w", pid, want.name, err)
				}
				*want.dst = kib << 10
			}
		}
	}
	return m, sc.Err()
}

// ListenerPID is the process listening on TCP port on this machine (IPv4
// or IPv6), found through /proc/net/tcp* and the processes' open sockets.
// It needs permission to read those processes' fd folders (the same user,
// or root).
func ListenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// local_address is HEXIP:HEXPORT; state 0A is LISTEN; inode is field 10.
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on TCP port %d here", port)
	}
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		fds, err := os.ReadDir(p + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && inodes[link] {
				return strconv.Atoi(filepath.Base(p))
			}
		}
	}
	return 0, fmt.Errorf("TCP port %d: listening socket found, but not the process holding it (permissions?)", port)
}
