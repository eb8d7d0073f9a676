package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuTicks returns utime+stime of pid in clock ticks, from /proc/<pid>/stat
// (proc(5): fields 14 and 15). The command name, field 2, may hold spaces
// and parentheses, so fields are counted after its last ')'.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

func parseStatTicks(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name in %q", b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: bad utime %q or stime %q", f[11], f[12])
	}
	return utime + stime, nil
}

// memKiB returns VmHWM (peak resident set) and VmRSS of pid in KiB, from
// /proc/<pid>/status.
func memKiB(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatusMem(b)
}

func parseStatusMem(b []byte) (hwm, rss int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		n, perr := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("status: %s: %q", k, v)
		}
		if k == "VmHWM" {
			hwm = n
		} else {
			rss = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("status: VmHWM or VmRSS missing")
	}
	return hwm, rss, nil
}

// ctxSwitches returns the voluntary plus involuntary context switches of
// every live thread of pid (/proc/<pid>/task/*/status). Threads that have
// exited are not counted; Go and HAProxy keep theirs.
func ctxSwitches(pid int) (uint64, error) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("process %d: no threads", pid)
	}
	var total uint64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited meanwhile
		}
		total += parseCtxSwitches(b)
	}
	return total, nil
}

func parseCtxSwitches(b []byte) uint64 {
	var total uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			total += n
		}
	}
	return total
}

// machineTicks returns, from /proc/stat (proc(5)), clock ticks of all
// CPUs since boot: idle (idle and iowait), irq (irq and softirq; loopback
// packets are mostly handled there) and steal (time the hypervisor took),
// and how many CPUs there are. Idle time is measured exactly on tickless
// kernels, whereas user and system time are sampled at each tick and miss
// short bursts of work, so busy time is best derived from idle time.
func machineTicks() (idle, irq, steal uint64, ncpu int, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, 0, err
	}
	return parseMachineTicks(b)
}

func parseMachineTicks(b []byte) (idle, irq, steal uint64, ncpu int, err error) {
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]uint64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("/proc/stat: %q", line)
		}
	}
	for l := range bytes.Lines(rest) {
		if bytes.HasPrefix(l, []byte("cpu")) {
			ncpu++
		}
	}
	if ncpu == 0 {
		return 0, 0, 0, 0, fmt.Errorf("/proc/stat: no cpuN lines")
	}
	return v[3] + v[4], v[5] + v[6], v[7], ncpu, nil
}
