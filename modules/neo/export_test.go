package neo

// Helpers only the tests use.

// handleAdmin serves one admin request: it returns the status, the JSON
// value to answer with, or an error whose status is the first result.
func (a *App) handleAdmin(method string, segs []string, body []byte) (int, any, error) {
	return a.handleAdminBy(method, segs, body, Author{})
}
