package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/xds/controlplane"
)

const benchToken = "xds-bench-join-token"

// plane is a running `skein control-plane` process: the real binary, so
// that its CPU time and memory are its own, apart from the simulated
// sidecars'.
type plane struct {
	cmd    *exec.Cmd
	addr   string
	client *http.Client
	done   chan error
}

// startPlane runs bin's control plane on a free loopback port with its
// home, CA and log in dir, and waits until it answers. Registrations live
// an hour (no heartbeats needed during a run) and it logs warnings only,
// so that 10,000 "instance registered" lines do not count as its work.
func startPlane(bin, dir string) (*plane, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, "control-plane.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "control-plane", "--listen-address", addr, "--join-token", benchToken,
		"--lease-ttl", "1h", "--ca-dir", filepath.Join(dir, "ca"), "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SKEIN_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &plane{cmd: cmd, addr: addr, done: make(chan error, 1), client: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			// Loopback to a control plane this run started: its CA is
			// fresh and of no interest here.
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
		},
	}}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get("https://" + addr + controlplane.StatusPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("control plane exited: %v (log: %s)", err, filepath.Join(dir, "control-plane.log"))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("control plane at %s not answering after 30s: %v", addr, err)
		}
	}
}

func (p *plane) pid() int { return p.cmd.Process.Pid }

// register PUTs an instance into the registry, as a sidecar's Registrar
// does (controlplane.InstancesPath).
func (p *plane) register(ctx context.Context, in discovery.Instance) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "https://"+p.addr+controlplane.InstancesPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register %s: %s: %s", in.Address, resp.Status, b)
	}
	return nil
}

// registerAll registers instances 0..n-1 with 32 requests in flight.
func (p *plane) registerAll(ctx context.Context, n int, inst func(int) discovery.Instance) error {
	next := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if err := p.register(ctx, inst(i)); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		})
	}
	var err error
loop:
	for i := range n {
		select {
		case next <- i:
		case err = <-errc:
			break loop
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// stop ends the control plane: SIGTERM, then SIGKILL after 10 s.
func (p *plane) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.client.CloseIdleConnections()
}

// procTicks is a process's CPU time (utime+stime, clock ticks) from
// /proc/<pid>/stat, fields 14 and 15 (proc(5)); fields are counted after
// the command name's last ')'.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want 13 or more", pid, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return u + s, nil
}

// procMem is a process's VmRSS and VmHWM (peak) in KiB.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, hwm, nil
}

// clockTicks is getconf CLK_TCK: the unit of /proc/<pid>/stat times.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && n > 0 {
		return float64(n)
	}
	return 100
}

// waitIdle waits (up to limit) until pid uses under 5% of a core over a
// second: the control plane has finished building and pushing.
func waitIdle(pid int, hz float64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		t0, err := procTicks(pid)
		if err != nil {
			return err
		}
		time.Sleep(time.Second)
		t1, err := procTicks(pid)
		if err != nil {
			return err
		}
		if float64(t1-t0) <= hz/20 {
			return nil
		}
	}
	return fmt.Errorf("control plane still busy after %s", limit)
}
