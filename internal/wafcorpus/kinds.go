package wafcorpus

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// marshal encodes v as a JavaScript client does (JSON.stringify does not
// escape <, > and &).
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func (g *gen) restJSON(i int) Request {
	switch i % 8 {
	case 0:
		items := []any{}
		for k := 1 + g.rng.IntN(4); k > 0; k-- {
			items = append(items, map[string]any{"sku": fmt.Sprintf("SKU-%05d", g.rng.IntN(99999)), "name": g.pick(products), "qty": 1 + g.rng.IntN(5), "unit_price": float64(g.rng.IntN(20000)) / 100})
		}
		return g.jsonRequest("", "POST", "/api/v1/orders", marshal(map[string]any{
			"customer": map[string]any{"name": g.name(), "email": g.email(), "phone": fmt.Sprintf("+%d %03d %04d-%03d", 1+g.rng.IntN(98), g.rng.IntN(1000), g.rng.IntN(10000), g.rng.IntN(1000)),
				"address": map[string]any{"street": g.pick(streets), "city": g.pick(cities), "zip": fmt.Sprintf("%05d", g.rng.IntN(99999)), "country": g.pick([]string{"DE", "FR", "BR", "JP", "US", "PL", "TR", "IN"})}},
			"items": items, "currency": g.pick(currencies), "note": g.text(), "gift_message": g.text(),
			"tags": []string{g.pick(tags), g.pick(tags)}, "metadata": map[string]any{"source": g.pick([]string{"web", "ios", "android", "pos"}), "utm_campaign": "spring_sale-2024", "coupon": "SAVE-10%"},
		}))
	case 1:
		return g.jsonRequest("", "PATCH", fmt.Sprintf("/api/v1/tickets/%d", 1000+g.rng.IntN(9000)), marshal(map[string]any{
			"status": g.pick(statuses), "priority": g.pick([]string{"low", "normal", "high", "urgent"}), "comment": g.text() + " " + g.text(),
			"assignee": g.email(), "tags": []string{g.pick(tags)}, "due_at": g.date(),
		}))
	case 2:
		return g.jsonRequest("", "POST", "/api/v1/reviews", marshal(map[string]any{
			"product_id": g.uuid(), "rating": 1 + g.rng.IntN(5), "title": g.pick(products) + " – " + g.pick([]string{"love it!", "not bad", "meh...", "5/5 would buy again", "exactly as described"}),
			"body": g.text() + "\n\n" + g.text(), "author": g.name(), "verified_purchase": g.rng.IntN(2) == 0,
		}))
	case 3:
		return g.jsonRequest("", "PUT", "/api/v1/customers/"+g.uuid(), marshal(map[string]any{
			"first_name": g.pick(firstNames), "last_name": g.pick(lastNames), "email": g.email(), "company": g.pick([]string{"ACME Corp.", "Müller & Söhne GmbH", "O'Neil Bros.", "Smith, Jones & Partners LLP", "株式会社サンプル", "Café Noir S.A.R.L."}),
			"billing":     map[string]any{"street": g.pick(streets), "city": g.pick(cities), "vat_id": fmt.Sprintf("DE%09d", g.rng.IntN(999999999))},
			"preferences": map[string]any{"newsletter": true, "language": g.pick(languages), "timezone": g.pick([]string{"Europe/Berlin", "America/Sao_Paulo", "Asia/Tokyo", "UTC"})},
			"notes":       g.text(),
		}))
	case 4:
		return g.jsonRequest("", "POST", "/api/v1/events", marshal(map[string]any{
			"event": g.pick([]string{"page_view", "add_to_cart", "checkout_started", "search", "signup"}), "anonymous_id": g.uuid(), "timestamp": g.date(),
			"properties": map[string]any{"path": fmt.Sprintf("/products?id=%d&ref=email&utm_source=newsletter", g.rng.IntN(999)), "referrer": "https://www.google.com/", "title": g.pick(products) + " | Shop",
				"screen": "1920x1080", "locale": g.pick(acceptLanguages), "query": g.pick(searchTerms)},
		}))
	case 5:
		return g.jsonRequest("", "POST", "/api/v1/messages", marshal(map[string]any{
			"to": []string{g.email()}, "cc": []string{}, "subject": "Re: " + g.text(), "text": g.text() + "\n\n--\n" + g.name() + "\n" + g.pick(streets) + ", " + g.pick(cities),
			"thread_id": g.uuid(), "attachments": []any{},
		}))
	case 6:
		// a settings document with nested arrays and numbers
		return g.jsonRequest("", "PUT", "/api/v1/settings", marshal(map[string]any{
			"notifications":  map[string]any{"email": true, "sms": false, "quiet_hours": []string{"22:00", "07:00"}},
			"shipping_zones": []any{map[string]any{"name": "EU (excl. CH)", "rate": 4.9, "free_over": 50}, map[string]any{"name": "Rest of world", "rate": 14.5}},
			"signature":      "Best regards,\n" + g.name() + "\n" + g.email(), "footer": "© 2024 ACME — All rights reserved.",
		}))
	default:
		if g.rng.IntN(2) == 0 {
			return Request{Method: "GET", Target: fmt.Sprintf("/api/v1/orders/%d?expand=items,customer&fields=id,total,status", 10000+g.rng.IntN(90000)), Headers: g.headers("application/json")}
		}
		return Request{Method: "DELETE", Target: fmt.Sprintf("/api/v1/carts/%s/items/SKU-%05d", g.uuid(), g.rng.IntN(99999)), Headers: g.headers("application/json")}
	}
}

// graphQL operations clients send, with their variables.
var gqlOps = []struct {
	name, doc string
	vars      func(g *gen) map[string]any
}{
	{"GetUser", "query GetUser($id: ID!) {\n  user(id: $id) {\n    id\n    name\n    email\n    orders(first: 10) {\n      edges {\n        node {\n          id\n          total\n          status\n        }\n      }\n      pageInfo { hasNextPage endCursor }\n    }\n  }\n}",
		func(g *gen) map[string]any { return map[string]any{"id": g.uuid()} }},
	{"CreateOrder", "mutation CreateOrder($input: CreateOrderInput!) {\n  createOrder(input: $input) {\n    order { id number total { amount currency } }\n    errors { field message }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"input": map[string]any{"customerId": g.uuid(), "note": g.text(), "lines": []any{map[string]any{"sku": fmt.Sprintf("SKU-%05d", g.rng.IntN(99999)), "quantity": 1 + g.rng.IntN(3)}}}}
		}},
	{"UpdateProfile", "mutation UpdateProfile($input: UpdateProfileInput!) {\n  updateProfile(input: $input) {\n    user { id displayName bio }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"input": map[string]any{"displayName": g.name(), "bio": g.text(), "website": "https://example.com/~" + g.token(6)}}
		}},
	{"SearchProducts", "query SearchProducts($q: String!, $first: Int = 20, $after: String) {\n  search(query: $q, first: $first, after: $after) {\n    totalCount\n    edges {\n      cursor\n      node {\n        ... on Product { id title price { amount currency } images(first: 1) { url altText } }\n      }\n    }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"q": g.pick(searchTerms), "first": 20, "after": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("cursor:%d", g.rng.IntN(500))))}
		}},
	{"ProductPage", "query ProductPage($handle: String!, $withReviews: Boolean!) {\n  product(handle: $handle) {\n    id\n    title\n    descriptionHtml\n    variants(first: 50) { nodes { id sku availableForSale selectedOptions { name value } } }\n    reviews(first: 5) @include(if: $withReviews) { nodes { rating body author { name } } }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"handle": strings.ToLower(strings.ReplaceAll(g.pick([]string{"running shoes", "tea set", "yoga mat", "usb hub"}), " ", "-")), "withReviews": g.rng.IntN(2) == 0}
		}},
	{"AddComment", "mutation AddComment($ticketId: ID!, $body: String!, $internal: Boolean) {\n  addComment(ticketId: $ticketId, body: $body, internal: $internal) {\n    comment { id createdAt author { id name } }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"ticketId": fmt.Sprint(1000 + g.rng.IntN(9000)), "body": g.text() + "\n\n" + g.text(), "internal": g.rng.IntN(2) == 0}
		}},
	{"Viewer", "query Viewer {\n  viewer {\n    id\n    login\n    organizations(first: 5) { nodes { id name avatarUrl } }\n    notifications(unreadOnly: true) { totalCount }\n  }\n}",
		func(g *gen) map[string]any { return nil }},
	{"OrdersByStatus", "query OrdersByStatus($status: OrderStatus!, $from: DateTime, $to: DateTime) {\n  orders(filter: { status: $status, createdAt: { gte: $from, lt: $to } }, orderBy: { field: CREATED_AT, direction: DESC }, first: 25) {\n    nodes { id number customer { name } total { amount } }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"status": strings.ToUpper(g.pick(statuses)), "from": g.date(), "to": g.date()}
		}},
	{"DeleteAddress", "mutation DeleteAddress($id: ID!) {\n  deleteAddress(id: $id) { deletedId userErrors { field message } }\n}",
		func(g *gen) map[string]any { return map[string]any{"id": g.uuid()} }},
	{"NodeQuery", "query NodeQuery($id: ID!) {\n  node(id: $id) {\n    __typename\n    ... on User { id name }\n    ... on Order { id number }\n  }\n}",
		func(g *gen) map[string]any {
			return map[string]any{"id": base64.StdEncoding.EncodeToString([]byte("Order:" + fmt.Sprint(g.rng.IntN(99999))))}
		}},
	{"CartFragment", "fragment LineFields on CartLine {\n  id\n  quantity\n  merchandise { ... on ProductVariant { id title price { amount } } }\n}\n\nquery Cart($cartId: ID!) {\n  cart(id: $cartId) {\n    id\n    checkoutUrl\n    lines(first: 100) { edges { node { ...LineFields } } }\n    cost { totalAmount { amount currencyCode } }\n  }\n}",
		func(g *gen) map[string]any { return map[string]any{"cartId": "gid://shop/Cart/" + g.token(20)} }},
	{"Subscribe", "subscription OnOrderUpdated($orderId: ID!) {\n  orderUpdated(orderId: $orderId) { id status updatedAt }\n}",
		func(g *gen) map[string]any { return map[string]any{"orderId": g.uuid()} }},
	{"InlineArgs", "query {\n  products(first: 10, where: { title_contains: \"%s\", price_lt: 100 }) {\n    id\n    title\n  }\n}",
		nil},
}

func (g *gen) graphQL(i int) Request {
	op := gqlOps[i%len(gqlOps)]
	doc := op.doc
	var vars map[string]any
	if op.vars != nil {
		vars = op.vars(g)
	} else {
		doc = fmt.Sprintf(doc, strings.ReplaceAll(g.pick([]string{"shoes", "tea", "café", "kids' jacket", "c++ book"}), `"`, ""))
	}
	body := map[string]any{"query": doc, "operationName": op.name}
	if vars != nil {
		body["variables"] = vars
	}
	if op.name == "" || op.vars == nil {
		delete(body, "operationName")
	}
	switch g.rng.IntN(6) {
	case 0:
		// GET, as Apollo's persisted-query fallback or a CDN-cacheable query
		q := url.Values{"query": {doc}}
		if vars != nil {
			q.Set("variables", string(marshal(vars)))
		}
		if op.vars != nil {
			q.Set("operationName", op.name)
		}
		return Request{Method: "GET", Target: "/graphql?" + q.Encode(), Headers: g.headers("application/graphql-response+json, application/json")}
	case 1:
		// a batch of two operations
		other := gqlOps[(i+3)%len(gqlOps)]
		b2 := map[string]any{"query": other.doc}
		if other.vars != nil {
			b2["variables"] = other.vars(g)
			b2["operationName"] = other.name
		} else {
			b2["query"] = fmt.Sprintf(other.doc, "tea")
		}
		return g.jsonRequest("", "POST", "/graphql", marshal([]any{body, b2}))
	case 2:
		body["extensions"] = map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": fmt.Sprintf("%064x", g.rng.Uint64())}}
	}
	return g.jsonRequest("", "POST", "/graphql", marshal(body))
}

func (g *gen) search(i int) Request {
	q := url.Values{}
	q.Set("q", g.pick(searchTerms))
	switch i % 4 {
	case 0:
		q.Set("page", fmt.Sprint(1+g.rng.IntN(20)))
		q.Set("sort", g.pick([]string{"price_asc", "-created_at", "relevance", "rating:desc"}))
	case 1:
		q.Set("filter[status]", g.pick(statuses))
		q.Set("filter[tags]", g.pick(tags)+","+g.pick(tags))
		q.Set("fields", "id,name,email,created_at")
	case 2:
		q.Set("since", g.date())
		q.Set("lang", g.pick(languages))
		q.Add("ids[]", fmt.Sprint(g.rng.IntN(1000)))
		q.Add("ids[]", fmt.Sprint(g.rng.IntN(1000)))
	case 3:
		q.Set("near", fmt.Sprintf("%.5f,%.5f", 40+g.rng.Float64()*10, -3+g.rng.Float64()*20))
		q.Set("radius", "5km")
		q.Set("category", g.pick([]string{"food & drink", "health/beauty", "kids' toys", "DIY + garden"}))
	}
	path := g.pick([]string{"/api/v1/search", "/search", "/api/v2/products", "/api/v1/contacts"})
	return Request{Method: "GET", Target: path + "?" + q.Encode(), Headers: g.headers("application/json")}
}

func (g *gen) richText(i int) Request {
	var body string
	if i%2 == 0 {
		body = g.pick(markdown)
	} else {
		body = g.pick(richHTML)
	}
	switch i % 3 {
	case 0:
		return g.jsonRequest("", "POST", "/api/v1/posts", marshal(map[string]any{"title": g.text(), "body": body, "format": map[bool]string{true: "markdown", false: "html"}[i%2 == 0], "draft": false, "author": g.name()}))
	case 1:
		return g.jsonRequest("", "PATCH", fmt.Sprintf("/api/v1/products/%d", g.rng.IntN(9999)), marshal(map[string]any{"description": body, "seo": map[string]any{"title": g.pick(products), "description": g.text()}}))
	default:
		f := url.Values{"subject": {g.text()}, "message": {body}, "email": {g.email()}, "name": {g.name()}}
		h := append(g.headers("text/html,application/xhtml+xml"), [2]string{"Content-Type", "application/x-www-form-urlencoded"})
		return Request{Method: "POST", Target: "/contact", Headers: h, Body: []byte(f.Encode())}
	}
}
