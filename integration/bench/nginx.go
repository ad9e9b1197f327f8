package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/projectneo/caddy-neo/integration/harness"
)

func init() {
	register(Comparison{
		Name: "nginx-waf",
		Description: "caddy-neo edge with Coraza + CRS 4.25 PL1 vs nginx + ModSecurity v3 + CRS 3.3 PL1 (Debian), " +
			"proxying the same echo replica: benign GET and 2 KB JSON POST (needs apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs)",
		Setup: setupNginxWAF,
	})
}

const nginxConf = `load_module /usr/share/nginx/modules/ngx_http_modsecurity_module.so;
user root;
worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	client_max_body_size 28m;
	upstream echo {
		server 127.0.0.1:%[2]d;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:%[3]d reuseport;
		modsecurity on;
		modsecurity_rules_file %[1]s/modsec.conf;
		location / {
			proxy_pass http://echo;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
		}
	}
}
`

// The same policy as the edge's: blocking, paranoia level 1, request bodies
// inspected, response bodies not, no audit log.
const modsecConf = `Include /usr/share/nginx/docs/modsecurity/modsecurity.conf
SecRuleEngine On
SecResponseBodyAccess Off
SecAuditEngine Off
SecRequestBodyLimit 29360128
Include /etc/modsecurity/crs/crs-setup.conf
Include /usr/share/modsecurity-crs/rules/*.conf
`

func startNginx(replica int) (port int, stop func(), err error) {
	if _, err := os.Stat("/usr/share/nginx/modules/ngx_http_modsecurity_module.so"); err != nil {
		return 0, nil, fmt.Errorf("nginx with ModSecurity is not installed: apt-get install nginx libnginx-mod-http-modsecurity modsecurity-crs")
	}
	dir, err := os.MkdirTemp("", "neo-bench-nginx-")
	if err != nil {
		return 0, nil, err
	}
	if port, err = harness.FreePort(); err != nil {
		return 0, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(fmt.Sprintf(nginxConf, dir, replica, port)), 0o644); err != nil {
		return 0, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "modsec.conf"), []byte(modsecConf), 0o644); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command("nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
			return port, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			errlog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return 0, nil, fmt.Errorf("nginx did not start: %v\n%s", err, errlog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func setupNginxWAF(context.Context) ([]Variant, func(), error) {
	edge, edgePort, replica, err := startEdgeForBench("On")
	if err != nil {
		return nil, nil, err
	}
	ngPort, ngStop, err := startNginx(replica)
	if err != nil {
		edge.Stop()
		return nil, nil, err
	}
	get, post := wafGET, wafPOST
	return []Variant{
			{Name: "GET nginx+ModSecurity", Targets: get(ngPort)},
			{Name: "GET caddy-neo edge", Targets: get(edgePort), Baseline: 0},
			{Name: "POST 2KB JSON nginx+ModSecurity", Targets: post(ngPort)},
			{Name: "POST 2KB JSON caddy-neo edge", Targets: post(edgePort), Baseline: 2},
		}, func() {
			ngStop()
			edge.Stop()
		}, nil
}
