// Command waf compares, end to end over loopback, caddy-neo's WAF (Coraza +
// OWASP CRS 4 via coraza-caddy, with and without the wafaccel speed-ups) with
// nginx + ModSecurity v3 + OWASP CRS 3.3 from Debian's packages, at paranoia
// level 1, blocking, request and response body inspection as in each engine's
// recommended configuration. Both WAFs reverse-proxy to the same tiny Caddy
// backend. Every workload runs for a bounded time with wrk against
// 127.0.0.1 only; throughput (req/s) and server CPU per request (from
// /proc/<pid>/stat of the WAF's processes) are reported side by side. The
// three servers run at once (idle but for the one under load) and every
// round measures each workload on each of them in turn, so that a change in
// the machine's speed (shared cores) hits all of them alike; the table gives
// the mean of the rounds and the range of the per-round ratios.
//
// It is not part of `go test`. Prerequisites (Debian):
//
//	apt-get install -y nginx libnginx-mod-http-modsecurity modsecurity-crs wrk
//	go build -o caddy ./cmd/caddy
//	go run ./integration/bench/waf -caddy ./caddy -duration 10s
//
// With -caddy-base an earlier caddy-neo binary runs beside them (accel on),
// for "no workload slower than before", in the same rounds.
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
	caddyAddr   = "127.0.0.1:18081" // accel on
	caddyOffAdr = "127.0.0.1:18083" // accel off
	nginxAddr   = "127.0.0.1:18082"
	caddyBase   = "127.0.0.1:18084" // -caddy-base, accel on
)

var (
	caddyBin    = flag.String("caddy", "./caddy", "caddy-neo binary")
	baseBin     = flag.String("caddy-base", "", "an earlier caddy-neo binary to compare with (accel on; its config without the actions it does not know: neoDistinctKeys, neoContent, neoExclude)")
	nginxBin    = flag.String("nginx", "/usr/sbin/nginx", "nginx binary")
	crsSetup    = flag.String("crs-setup", "/etc/modsecurity/crs/crs-setup.conf", "CRS setup for ModSecurity (Debian's modsecurity-crs)")
	crsRules    = flag.String("crs-rules", "/usr/share/modsecurity-crs/rules", "CRS rules directory for ModSecurity (Debian's modsecurity-crs)")
	duration    = flag.Duration("duration", 10*time.Second, "wrk duration per workload and server (at most 60s)")
	connections = flag.Int("c", 8, "wrk connections")
	only        = flag.String("only", "", "comma-separated workloads to run (default: all)")
	rounds      = flag.Int("rounds", 2, "rounds (each measures every workload on every server in turn; at most 10)")
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
	backend := startCaddy(dir, "backend", backendAddr, fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp://%s {\n\theader Content-Type application/json\n\trespond `{\"ok\":true}` 200\n}\n", backendAddr))
	defer stop(backend)
	waitListening(backendAddr)

	if *rounds < 1 || *rounds > 10 {
		log.Fatal("-rounds must be 1 to 10")
	}
	names := []string{"nginx+modsecurity", "caddy-neo accel off", "caddy-neo accel on"}
	servers := []*server{
		startNginx(dir),
		startCaddy(dir, "waf-off", caddyOffAdr, caddyWAFConfig(true, caddyOffAdr)),
		startCaddy(dir, "waf-on", caddyAddr, caddyWAFConfig(false, caddyAddr)),
	}
	if *baseBin != "" {
		names = append(names, "caddy-neo base")
		servers = append(servers, startCaddyBin(*baseBin, dir, "waf-base", caddyBase, baseConfig(caddyWAFConfig(false, caddyBase))))
	}
	defer func() {
		for _, s := range servers {
			stop(s)
		}
	}()
	for _, s := range servers {
		waitListening(s.addr)
	}
	// results[workload][server][round]
	results := map[string][][]row{}
	for r := 0; r < *rounds; r++ {
		for _, wl := range wls {
			if *only != "" && !strings.Contains(","+*only+",", ","+wl.name+",") {
				continue
			}
			if results[wl.name] == nil {
				results[wl.name] = make([][]row, len(servers))
			}
			for i, srv := range servers {
				// A short warm-up, then the measured run.
				runWrk(srv.addr, wl, time.Second)
				cpu0 := procTreeCPU(srv.cmd.Process.Pid)
				reqs, non2xx, secs := runWrk(srv.addr, wl, *duration)
				cpu := procTreeCPU(srv.cmd.Process.Pid) - cpu0
				x := row{rps: float64(reqs) / secs, non2xx: non2xx}
				if reqs > 0 {
					x.cpuMs = cpu.Seconds() * 1000 / float64(reqs)
				}
				results[wl.name][i] = append(results[wl.name][i], x)
				log.Printf("round %d %-20s %-16s %8.1f req/s  %7.3f ms CPU/req  %d non-2xx of %d", r+1, names[i], wl.name, x.rps, x.cpuMs, non2xx, reqs)
			}
		}
	}

	mean := func(rs []row) row {
		var m row
		for _, x := range rs {
			m.rps += x.rps / float64(len(rs))
			m.cpuMs += x.cpuMs / float64(len(rs))
		}
		return m
	}
	fmt.Printf("\n%d round(s) of %s per workload and server; mean req/s (CPU ms per request), ratios of the means [range of the per-round ratios]\n", *rounds, *duration)
	fmt.Printf("%-16s %24s %24s %24s %22s %22s", "workload", "nginx+modsec", "caddy-neo accel off", "caddy-neo accel on", "on/nginx", "on/off")
	if *baseBin != "" {
		fmt.Printf(" %24s %22s %22s", "caddy-neo base", "base/nginx", "on/base")
	}
	fmt.Println()
	for _, wl := range wls {
		r := results[wl.name]
		if r == nil {
			continue
		}
		n, off, on := mean(r[0]), mean(r[1]), mean(r[2])
		lo, hi := ratioRange(r[2], r[0])
		lo2, hi2 := ratioRange(r[2], r[1])
		fmt.Printf("%-16s %13.1f (%7.2f) %13.1f (%7.2f) %13.1f (%7.2f) %6.2fx [%4.2f-%4.2f] %6.2fx [%4.2f-%4.2f]",
			wl.name, n.rps, n.cpuMs, off.rps, off.cpuMs, on.rps, on.cpuMs, ratio(on.rps, n.rps), lo, hi, ratio(on.rps, off.rps), lo2, hi2)
		if len(r) > 3 {
			b := mean(r[3])
			lo3, hi3 := ratioRange(r[3], r[0])
			lo4, hi4 := ratioRange(r[2], r[3])
			fmt.Printf(" %13.1f (%7.2f) %6.2fx [%4.2f-%4.2f] %6.2fx [%4.2f-%4.2f]", b.rps, b.cpuMs, ratio(b.rps, n.rps), lo3, hi3, ratio(on.rps, b.rps), lo4, hi4)
		}
		fmt.Println()
	}
}

// row is one measurement: a workload on a server in one round.
type row struct {
	rps, cpuMs float64
	non2xx     int
}

// ratioRange returns the smallest and largest per-round throughput ratio
// a/b.
func ratioRange(a, b []row) (lo, hi float64) {
	for k := range a {
		q := ratio(a[k].rps, b[k].rps)
		if k == 0 || q < lo {
			lo = q
		}
		if k == 0 || q > hi {
			hi = q
		}
	}
	return lo, hi
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
wrk.headers["Host"] = "api.example.com"
wrk.headers["Accept"] = "application/json"
wrk.path = %q
`, bodyFile, ctype, wafbench.UserAgent, path)
	}
	mp, mpType := wafbench.Multipart1MiB()
	paths := write("attacks.txt", strings.Join(wafbench.AttackPaths(), "\n")+"\n")
	return []workload{
		{"json_2KB_POST", write("json2k.lua", post(write("json2k.json", wafbench.JSON2KB()), "application/json", "/api/customers"))},
		{"json_200B_POST", write("json200.lua", post(write("json200.json", wafbench.JSON200B), "application/json", "/api/orders"))},
		{"GET_query", write("get.lua", fmt.Sprintf("wrk.path = %q\nwrk.headers[\"User-Agent\"] = %q\nwrk.headers[\"Host\"] = \"api.example.com\"\nwrk.headers[\"Accept\"] = \"application/json\"\n", wafbench.GETQuery, wafbench.UserAgent))},
		// The same GET with query values that never repeat (rule
		// skipping's verdict cache cannot answer for them).
		{"GET_varied", write("getvaried.lua", fmt.Sprintf(`local words = {"blue", "running", "shoes", "red", "jacket", "wool", "summer", "trail", "kids", "size"}
local i = 0
wrk.headers["User-Agent"] = %q
wrk.headers["Host"] = "api.example.com"
wrk.headers["Accept"] = "application/json"
request = function()
  i = i + 1
  return wrk.format("GET", string.format("/api/search?q=%%s+%%s+%%d&page=%%d&sort=price_desc&size=%%d",
    words[i %% 10 + 1], words[math.floor(i / 10) %% 10 + 1], i, i %% 7 + 1, 36 + i %% 12))
end
`, wafbench.UserAgent))},
		{"multipart_1MiB", write("multipart.lua", post(write("multipart.bin", string(mp)), mpType, "/upload"))},
		{"attack_mix_50", write("attacks.lua", fmt.Sprintf(`local paths = {}
for line in io.lines(%q) do paths[#paths + 1] = line end
local i = 0
wrk.headers["User-Agent"] = %q
wrk.headers["Host"] = "api.example.com"
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
`, paths, wafbench.UserAgent))},
	}
}

// auditOff: no audit log, as in the nginx configuration (SecAuditEngine
// Off), so that both WAFs do the same work for a blocked request (Coraza's
// recommended configuration builds one for every 4xx/5xx).
const auditOff = "SecAuditEngine Off\n"

func caddyWAFConfig(off bool, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	sw := "on"
	if off {
		sw = "off"
	}
	return fmt.Sprintf(`{
	admin off
	auto_https off
	neo_waf_accel %s
	order coraza_waf first
}
http://:%s {
	bind %s
	`+wafbench.CorazaWAFBlock(auditOff+wafaccel.SkipDirectivesBefore, wafaccel.SkipDirectivesAfter)+`
	reverse_proxy %s
}
`, sw, port, host, backendAddr)
}

// baseConfig is a config for an earlier binary: without the actions it
// does not know.
func baseConfig(caddyfile string) string {
	var out []string
	for _, l := range strings.Split(caddyfile, "\n") {
		if !strings.Contains(l, "neoDistinctKeys") && !strings.Contains(l, "neoContent") && !strings.Contains(l, "neoExclude") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func startCaddy(dir, name, addr, caddyfile string) *server {
	return startCaddyBin(*caddyBin, dir, name, addr, caddyfile)
}

func startCaddyBin(bin, dir, name, addr, caddyfile string) *server {
	p := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(p, []byte(caddyfile), 0o644); err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(bin, "run", "--config", p, "--adapter", "caddyfile")
	cmd.Stdout, cmd.Stderr = logFile(dir, name), logFile(dir, name)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
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
		listen %[3]s reuseport;
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
