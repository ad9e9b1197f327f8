// Command waf compares, end to end over loopback, caddy-neo's WAF (Coraza +
// OWASP CRS 4 via coraza-caddy, with and without the wafaccel speed-ups) with
// nginx + ModSecurity v3 + OWASP CRS 3.3 from Debian's packages, at paranoia
// level 1, blocking, request and response body inspection as in each engine's
// recommended configuration. Both WAFs reverse-proxy to the same tiny Caddy
// backend. Every workload runs for a bounded time with wrk against
// 127.0.0.1 only; throughput (req/s) and server CPU per request (from
// /proc/<pid>/stat of the WAF's processes) are reported side by side.
//
// It is not part of `go test`. Prerequisites (Debian):
//
//	apt-get install -y nginx libnginx-mod-http-modsecurity modsecurity-crs wrk
//	go build -o caddy ./cmd/caddy
//	go run ./integration/bench/waf -caddy ./caddy -duration 10s
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/projectneo/caddy-neo/internal/wafbench"
	"github.com/projectneo/caddy-neo/modules/wafaccel"
)

const (
	backendAddr = "127.0.0.1:18090"
	caddyAddr   = "127.0.0.1:18081"
	nginxAddr   = "127.0.0.1:18082"
)

var (
	caddyBin    = flag.String("caddy", "./caddy", "caddy-neo binary")
	nginxBin    = flag.String("nginx", "/usr/sbin/nginx", "nginx binary")
	crsSetup    = flag.String("crs-setup", "/etc/modsecurity/crs/crs-setup.conf", "CRS setup for ModSecurity (Debian's modsecurity-crs)")
	crsRules    = flag.String("crs-rules", "/usr/share/modsecurity-crs/rules", "CRS rules directory for ModSecurity (Debian's modsecurity-crs)")
	duration    = flag.Duration("duration", 10*time.Second, "wrk duration per workload and server (at most 60s)")
	connections = flag.Int("c", 8, "wrk connections")
	only        = flag.String("only", "", "comma-separated workloads to run (default: all)")
)

type workload struct {
	name   string
	script string // wrk Lua script
}

// started holds every process this program started, so that a fatal error
// still stops them.
var started []*server

func fatalf(format string, args ...any) {
	for _, s := range started {
		stop(s)
	}
	log.Fatalf(format, args...)
}

type server struct {
	name string
	addr string
	cmd  *exec.Cmd
}

func main() {
	flag.Parse()
	if *duration > time.Minute {
		log.Fatal("-duration is bounded to 60s")
	}
	dir, err := os.MkdirTemp("", "neo-waf-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	wls := writeWorkloads(dir)
	backend := startCaddy(dir, "backend", fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp://%s {\n\theader Content-Type application/json\n\trespond `{\"ok\":true}` 200\n}\n", backendAddr))
	defer stop(backend)
	waitListening(backendAddr)

	type row struct {
		rps, cpuMs float64
		non2xx     int
	}
	results := map[string]map[string]row{}
	servers := []struct {
		name  string
		start func() *server
	}{
		{"nginx+modsecurity", func() *server { return startNginx(dir) }},
		{"caddy-neo accel off", func() *server { return startCaddy(dir, "waf-off", caddyWAFConfig(true)) }},
		{"caddy-neo accel on", func() *server { return startCaddy(dir, "waf-on", caddyWAFConfig(false)) }},
	}
	for _, s := range servers {
		srv := s.start()
		waitListening(srv.addr)
		for _, wl := range wls {
			if *only != "" && !strings.Contains(","+*only+",", ","+wl.name+",") {
				continue
			}
			// A short warm-up, then the measured run.
			runWrk(srv.addr, wl, time.Second)
			cpu0 := procTreeCPU(srv.cmd.Process.Pid)
			reqs, non2xx, secs := runWrk(srv.addr, wl, *duration)
			cpu := procTreeCPU(srv.cmd.Process.Pid) - cpu0
			if results[wl.name] == nil {
				results[wl.name] = map[string]row{}
			}
			r := row{rps: float64(reqs) / secs, non2xx: non2xx}
			if reqs > 0 {
				r.cpuMs = cpu.Seconds() * 1000 / float64(reqs)
			}
			results[wl.name][s.name] = r
			log.Printf("%-20s %-16s %8.1f req/s  %7.3f ms CPU/req  %d non-2xx of %d", s.name, wl.name, r.rps, r.cpuMs, non2xx, reqs)
		}
		stop(srv)
	}

	fmt.Printf("\n%-16s %22s %22s %22s %10s %10s\n", "workload", "nginx+modsec req/s (cpu ms)", "caddy off req/s (cpu ms)", "caddy on req/s (cpu ms)", "on/nginx", "on/off")
	for _, wl := range wls {
		r := results[wl.name]
		if r == nil {
			continue
		}
		n, off, on := r["nginx+modsecurity"], r["caddy-neo accel off"], r["caddy-neo accel on"]
		fmt.Printf("%-16s %14.1f (%6.2f) %14.1f (%6.2f) %14.1f (%6.2f) %9.2fx %9.2fx\n",
			wl.name, n.rps, n.cpuMs, off.rps, off.cpuMs, on.rps, on.cpuMs, ratio(on.rps, n.rps), ratio(on.rps, off.rps))
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func writeWorkloads(dir string) []workload {
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			fatalf("%v", err)
		}
		return p
	}
	post := func(bodyFile, ctype, path string) string {
		return fmt.Sprintf(`local f = io.open(%q, "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = %q
wrk.headers["User-Agent"] = %q
wrk.headers["Accept"] = "application/json"
wrk.path = %q
`, bodyFile, ctype, wafbench.UserAgent, path)
	}
	mp, mpType := wafbench.Multipart1MiB()
	paths := write("attacks.txt", strings.Join(wafbench.AttackPaths(), "\n")+"\n")
	return []workload{
		{"json_2KB_POST", write("json2k.lua", post(write("json2k.json", wafbench.JSON2KB()), "application/json", "/api/customers"))},
		{"json_200B_POST", write("json200.lua", post(write("json200.json", wafbench.JSON200B), "application/json", "/api/orders"))},
		{"GET_query", write("get.lua", fmt.Sprintf("wrk.path = %q\nwrk.headers[\"User-Agent\"] = %q\nwrk.headers[\"Accept\"] = \"application/json\"\n", wafbench.GETQuery, wafbench.UserAgent))},
		{"multipart_1MiB", write("multipart.lua", post(write("multipart.bin", string(mp)), mpType, "/upload"))},
		{"attack_mix_50", write("attacks.lua", fmt.Sprintf(`local paths = {}
for line in io.lines(%q) do paths[#paths + 1] = line end
local i = 0
wrk.headers["User-Agent"] = %q
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
`, paths, wafbench.UserAgent))},
	}
}

func caddyWAFConfig(off bool) string {
	sw := "on"
	if off {
		sw = "off"
	}
	return fmt.Sprintf(`{
	admin off
	auto_https off
	waf_accel %s
	order coraza_waf first
}
http://%s {
	`+wafbench.CorazaWAFBlock(wafaccel.SkipDirectivesBefore, wafaccel.SkipDirectivesAfter)+`
	reverse_proxy %s
}
`, sw, caddyAddr, backendAddr)
}

func startCaddy(dir, name, caddyfile string) *server {
	p := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(p, []byte(caddyfile), 0o644); err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(*caddyBin, "run", "--config", p, "--adapter", "caddyfile")
	cmd.Stdout, cmd.Stderr = logFile(dir, name), logFile(dir, name)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	addr := caddyAddr
	if name == "backend" {
		addr = backendAddr
	}
	s := &server{name: name, addr: addr, cmd: cmd}
	started = append(started, s)
	return s
}

func startNginx(dir string) *server {
	for _, d := range []string{"nginx-tmp", "modsec-tmp", "modsec-data"} {
		_ = os.MkdirAll(filepath.Join(dir, d), 0o777)
	}
	// ModSecurity's recommended settings (as in modsecurity.conf-recommended)
	// that matter here, then Debian's CRS 3.3 (paranoia level 1, blocking
	// through anomaly scoring).
	modsec := fmt.Sprintf(`SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" "id:'200002', phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecTmpDir %[1]s/modsec-tmp
SecDataDir %[1]s/modsec-data
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
Include %[2]s
Include %[3]s/*.conf
`, dir, *crsSetup, *crsRules)
	if err := os.WriteFile(filepath.Join(dir, "modsec.conf"), []byte(modsec), 0o644); err != nil {
		fatalf("%v", err)
	}
	conf := fmt.Sprintf(`user root;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/nginx-tmp;
	proxy_temp_path %[1]s/nginx-tmp;
	client_max_body_size 4m;
	client_body_buffer_size 2m;
	keepalive_requests 100000;
	upstream backend { server %[2]s; keepalive 16; }
	server {
		listen %[3]s;
		modsecurity on;
		modsecurity_rules_file %[1]s/modsec.conf;
		location / {
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_pass http://backend;
		}
	}
}
`, dir, backendAddr, nginxAddr)
	p := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(*nginxBin, "-p", dir, "-c", p, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = logFile(dir, "nginx"), logFile(dir, "nginx")
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	s := &server{name: "nginx", addr: nginxAddr, cmd: cmd}
	started = append(started, s)
	return s
}

func logFile(dir, name string) *os.File {
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fatalf("%v", err)
	}
	return f
}

func stop(s *server) {
	if s == nil || s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func waitListening(addr string) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			// The WAF answers only once its rules are loaded.
			if resp, err := http.Get("http://" + addr + "/"); err == nil {
				_ = resp.Body.Close()
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	fatalf("%s did not come up (logs in %s)", addr, os.TempDir())
}

var (
	reqsRe   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(ms|s|m)`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// runWrk runs wrk for d and returns the request count, the non-2xx count and
// the elapsed seconds wrk reported.
func runWrk(addr string, wl workload, d time.Duration) (int, int, float64) {
	secs := int(d.Seconds())
	if secs < 1 {
		secs = 1
	}
	out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(*connections), "-d"+strconv.Itoa(secs)+"s",
		"--timeout", "10s", "-s", wl.script, "http://"+addr+"/").CombinedOutput()
	if err != nil {
		fatalf("wrk: %v\n%s", err, out)
	}
	m := reqsRe.FindSubmatch(out)
	if m == nil {
		fatalf("unexpected wrk output:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	el, _ := strconv.ParseFloat(string(m[2]), 64)
	switch string(m[3]) {
	case "ms":
		el /= 1000
	case "m":
		el *= 60
	}
	non := 0
	if m := non2xxRe.FindSubmatch(out); m != nil {
		non, _ = strconv.Atoi(string(m[1]))
	}
	return n, non, el
}

// procTreeCPU returns the CPU time (user+system) used so far by pid and its
// direct children (nginx's workers).
func procTreeCPU(pid int) time.Duration {
	total := procCPU(pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil || c == pid {
			continue
		}
		if f := procStat(c); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			total += procCPU(c)
		}
	}
	return total
}

// procStat returns the fields of /proc/<pid>/stat after the command name:
// state, ppid, ...
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func procCPU(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}
