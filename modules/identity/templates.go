package identity

import "html/template"

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Tenant}} · {{.Realm}} · sign in</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:20rem}
h1{font-size:1.4rem;margin:0 0 .2rem} p.realm{color:#555;margin:0 0 1.5rem}
label{display:block;margin:.8rem 0 .2rem} input{width:100%;padding:.5rem;box-sizing:border-box}
button,a.neo-provider{display:block;width:100%;margin-top:1.2rem;padding:.6rem;text-align:center;box-sizing:border-box}
#neo-error{color:#b00020}
</style></head><body><main>
<h1 id="neo-tenant">{{.Tenant}}</h1>
<p class="realm" id="neo-realm">{{.Realm}}</p>
`

var loginTemplate = template.Must(template.New("login").Parse(pageHead + `
{{if .Error}}<p id="neo-error" role="alert">{{.Error}}</p>{{end}}
{{if .Users}}<form method="post" action="/identity/login" id="neo-login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="return" value="{{.Return}}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="signin">Sign in</button>
</form>{{end}}
{{range .Providers}}<a class="neo-provider" href="{{.URL}}">{{.Label}}</a>{{end}}
{{if not (or .Users .Providers)}}<p id="neo-error">Sign-in is not set up for {{.Tenant}} ({{.Realm}}).</p>{{end}}
</main></body></html>
`))

var logoutTemplate = template.Must(template.New("logout").Parse(pageHead + `
<form method="post" action="/identity/logout" id="neo-logout">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" id="signout">Sign out</button>
</form>
</main></body></html>
`))

var signedOutTemplate = template.Must(template.New("signedout").Parse(pageHead + `
<p id="neo-signed-out">You are signed out.</p>
<a href="/identity/login">Sign in again</a>
</main></body></html>
`))
