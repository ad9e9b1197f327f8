package wafcorpus

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"mime/multipart"
	"net/textproto"
	"strings"
)

// img draws a small picture (a gradient with a few random blocks).
func (g *gen) img() *image.RGBA {
	w, h := 8+g.rng.IntN(40), 8+g.rng.IntN(40)
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	c0 := color.RGBA{uint8(g.rng.IntN(256)), uint8(g.rng.IntN(256)), uint8(g.rng.IntN(256)), 255}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.RGBA{c0.R + uint8(x*3), c0.G + uint8(y*2), c0.B ^ uint8(x*y), 255})
		}
	}
	for k := g.rng.IntN(4); k > 0; k-- {
		x, y := g.rng.IntN(w), g.rng.IntN(h)
		for dy := 0; dy < 4 && y+dy < h; dy++ {
			for dx := 0; dx < 4 && x+dx < w; dx++ {
				m.Set(x+dx, y+dy, color.RGBA{uint8(g.rng.IntN(256)), 0, uint8(g.rng.IntN(256)), 255})
			}
		}
	}
	return m
}

// imageBytes returns an encoded picture and its media type.
func (g *gen) imageBytes() ([]byte, string) {
	m := g.img()
	var b bytes.Buffer
	switch g.rng.IntN(3) {
	case 0:
		_ = png.Encode(&b, m)
		return b.Bytes(), "image/png"
	case 1:
		_ = jpeg.Encode(&b, m, &jpeg.Options{Quality: 60 + g.rng.IntN(35)})
		return b.Bytes(), "image/jpeg"
	default:
		p := image.NewPaletted(m.Bounds(), palette.Plan9)
		for y := m.Bounds().Min.Y; y < m.Bounds().Max.Y; y++ {
			for x := m.Bounds().Min.X; x < m.Bounds().Max.X; x++ {
				p.Set(x, y, m.At(x, y))
			}
		}
		_ = gif.Encode(&b, p, nil)
		return b.Bytes(), "image/gif"
	}
}

func (g *gen) randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.IntN(256))
	}
	return b
}

func (g *gen) dataURL(i int) Request {
	switch i % 6 {
	case 0, 1, 2:
		data, typ := g.imageBytes()
		u := "data:" + typ + ";base64," + base64.StdEncoding.EncodeToString(data)
		field := g.pick([]string{"avatar", "photo", "thumbnail", "logo", "signature"})
		return g.jsonRequest("", "POST", "/api/v1/profiles/"+g.uuid()+"/"+field, marshal(map[string]any{field: u, "name": g.name(), "alt": g.text()}))
	case 3:
		// several images in one document (a gallery or a product)
		var imgs []any
		for k := 2 + g.rng.IntN(3); k > 0; k-- {
			data, typ := g.imageBytes()
			imgs = append(imgs, map[string]any{"src": "data:" + typ + ";base64," + base64.StdEncoding.EncodeToString(data), "caption": g.text()})
		}
		return g.jsonRequest("", "PUT", fmt.Sprintf("/api/v1/products/%d/gallery", g.rng.IntN(9999)), marshal(map[string]any{"images": imgs}))
	case 4:
		// a text file as a data URL (an editor's paste, a CSV attachment)
		text := "name,city,amount\n" + g.name() + "," + g.pick(cities) + ",12.50\n" + g.name() + "," + g.pick(cities) + ",7.00\n"
		mt := "text/csv"
		if g.rng.IntN(2) == 0 {
			text, mt = g.text()+"\n"+g.text(), "text/plain;charset=utf-8"
		}
		return g.jsonRequest("", "POST", "/api/v1/attachments", marshal(map[string]any{"filename": "notes.txt", "content": "data:" + mt + ";base64," + base64.StdEncoding.EncodeToString([]byte(text))}))
	default:
		// an image inside rich text (a pasted screenshot)
		data, typ := g.imageBytes()
		html := "<p>" + g.text() + "</p><p><img src=\"data:" + typ + ";base64," + base64.StdEncoding.EncodeToString(data) + "\" alt=\"screenshot\"></p>"
		return g.jsonRequest("", "POST", "/api/v1/notes", marshal(map[string]any{"title": g.text(), "html": html}))
	}
}

func (g *gen) base64Blob(i int) Request {
	var data []byte
	name := "file.bin"
	switch i % 3 {
	case 0:
		data, _ = g.imageBytes()
		name = "scan.png"
	case 1:
		data = append([]byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), g.randomBytes(200+g.rng.IntN(800))...)
		name = "invoice-" + fmt.Sprint(g.rng.IntN(9999)) + ".pdf"
	default:
		data = g.randomBytes(64 + g.rng.IntN(512))
	}
	enc := base64.StdEncoding
	if g.rng.IntN(3) == 0 {
		enc = base64.RawURLEncoding
	}
	return g.jsonRequest("", "POST", "/api/v1/documents", marshal(map[string]any{"filename": name, "content_base64": enc.EncodeToString(data), "sha256": fmt.Sprintf("%016x%016x%016x%016x", g.rng.Uint64(), g.rng.Uint64(), g.rng.Uint64(), g.rng.Uint64())}))
}

// jwtToken returns a signed-looking JWT (RS256 header, realistic claims,
// random signature).
func (g *gen) jwtToken() string {
	enc := base64.RawURLEncoding
	header := marshal(map[string]any{"alg": g.pick([]string{"RS256", "ES256", "EdDSA"}), "typ": "JWT", "kid": g.token(16)})
	claims := marshal(map[string]any{
		"iss": "https://acme.platform.example.com/identity", "sub": g.uuid(), "aud": []string{"orders", "ledger"},
		"exp": 1717000000 + g.rng.IntN(1000000), "iat": 1716990000 + g.rng.IntN(1000000), "scope": "openid profile email offline_access",
		"name": g.name(), "email": g.email(), "tenant": "acme", "stage": g.pick([]string{"dev", "test", "prod"}), "jti": g.uuid(),
	})
	return enc.EncodeToString(header) + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString(g.randomBytes(64+g.rng.IntN(192)))
}

func (g *gen) jwt(i int) Request {
	switch i % 3 {
	case 0:
		return g.jsonRequest("", "POST", "/identity/token/introspect", marshal(map[string]any{"token": g.jwtToken(), "token_type_hint": "access_token"}))
	case 1:
		f := "grant_type=refresh_token&refresh_token=" + g.jwtToken() + "&client_id=orders-web"
		if g.rng.IntN(2) == 0 {
			f = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" + g.jwtToken() + "&scope=orders.read%20orders.write"
		}
		h := append(g.headers("application/json"), [2]string{"Content-Type", "application/x-www-form-urlencoded"})
		return Request{Method: "POST", Target: "/identity/token", Headers: h, Body: []byte(f)}
	default:
		return g.jsonRequest("", "POST", "/api/v1/sessions/exchange", marshal(map[string]any{"id_token": g.jwtToken(), "access_token": g.jwtToken(), "expires_in": 300, "state": g.token(24), "nonce": g.token(24)}))
	}
}

func (g *gen) upload(i int) Request {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	_ = mw.SetBoundary(fmt.Sprintf("----WebKitFormBoundary%s", g.token(16)))
	_ = mw.WriteField("description", g.text())
	_ = mw.WriteField("folder", g.pick([]string{"invoices/2024", "team photos", "Q3 reports", "imports"}))
	if i%2 == 0 {
		var csv strings.Builder
		csv.WriteString("id,name,email,city,amount,note\n")
		for k := 0; k < 3+g.rng.IntN(20); k++ {
			fmt.Fprintf(&csv, "%d,\"%s\",%s,%s,%d.%02d,\"%s\"\n", k+1, g.name(), g.email(), g.pick(cities), g.rng.IntN(1000), g.rng.IntN(100), strings.ReplaceAll(g.text(), `"`, `""`))
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="contacts-export.csv"`)
		h.Set("Content-Type", "text/csv")
		w, _ := mw.CreatePart(h)
		_, _ = w.Write([]byte(csv.String()))
	} else {
		data, typ := g.imageBytes()
		ext := strings.TrimPrefix(typ, "image/")
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="IMG_%04d.%s"`, g.rng.IntN(9999), ext))
		h.Set("Content-Type", typ)
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(data)
	}
	_ = mw.Close()
	hs := append(g.headers("application/json"), [2]string{"Content-Type", mw.FormDataContentType()})
	return Request{Method: "POST", Target: "/api/v1/files", Headers: hs, Body: b.Bytes()}
}
