// Command storageonly prints the caddy-neo modules that importing the NATS
// certificate storage alone registers, one ID a line (TestStorageLinksAlone).
package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/caddyserver/caddy/v2"

	_ "github.com/projectneo/caddy-neo/modules/natsstorage"
)

func main() {
	for _, id := range caddy.Modules() {
		mi, err := caddy.GetModule(id)
		if err != nil {
			panic(err)
		}
		typ := reflect.TypeOf(mi.New())
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if strings.HasPrefix(typ.PkgPath(), "github.com/projectneo/caddy-neo/") {
			fmt.Println(id)
		}
	}
}
