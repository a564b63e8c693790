package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// frame is one step on the path from a walk's root to the current node: the node and the
// field of it that leads further down.
type frame struct {
	msg   protoreflect.Message
	field protoreflect.Name
}

// walk visits every parse node below root in depth-first order, calling fn with the node
// and the path to it (outermost first; pg_query's Node wrappers are skipped). Returning
// false from fn skips the node's children. walk is for the planning path, which runs once
// per statement shape; nothing on the per-execution path walks the tree.
func walk(root protoreflect.Message, fn func(m protoreflect.Message, path []frame) bool) {
	var path []frame
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if n, ok := m.Interface().(*pg_query.Node); ok {
			inner := nodeMessage(n)
			if inner == nil {
				return
			}
			m = inner
		}
		if !fn(m, path) {
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			path = append(path, frame{msg: m, field: fd.Name()})
			switch {
			case fd.IsList():
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			case fd.IsMap():
			default:
				visit(v.Message())
			}
			path = path[:len(path)-1]
			return true
		})
	}
	visit(root)
}

// nodeMessage unwraps a pg_query.Node to the message it holds.
func nodeMessage(n *pg_query.Node) protoreflect.Message {
	if n == nil {
		return nil
	}
	m := n.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("node")
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message()
}

// unwrap returns the message a Node holds, as a proto message (nil for nil).
func unwrap(n *pg_query.Node) any {
	if m := nodeMessage(n); m != nil {
		return m.Interface()
	}
	return nil
}
