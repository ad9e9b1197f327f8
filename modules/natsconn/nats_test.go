package natsconn

import "testing"

func TestAppValidate(t *testing.T) {
	for name, c := range map[string]*App{
		"bad conn name":  {Connections: map[string]*Connection{"a b": {}}},
		"bad url":        {Connections: map[string]*Connection{"a": {Servers: []string{"http://x:1"}}}},
		"two auths":      {Connections: map[string]*Connection{"a": {User: "u", Token: "t"}}},
		"password alone": {Connections: map[string]*Connection{"a": {Password: "p"}}},
		"bad inbox":      {Connections: map[string]*Connection{"a": {InboxPrefix: "_INBOX.>"}}},
		"js no dir":      {Embedded: &Embedded{JetStream: true}},
		"bad listen":     {Embedded: &Embedded{Listen: "nope"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
