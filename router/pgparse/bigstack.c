// Runs a Go callback on a new thread with a stack of a given size, so that a cgo call made
// from that callback (PostgreSQL's parser, through pg_query) runs on that stack.

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "_cgo_export.h"

static void *pgparse_thread(void *arg)
{
	pgparseOnBigStack((uintptr_t) arg);
	return NULL;
}

int pgparse_run_on_stack(uintptr_t handle, size_t stack_size)
{
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	rc = pthread_attr_init(&attr);
	if (rc != 0)
		return rc;
	rc = pthread_attr_setstacksize(&attr, stack_size);
	if (rc == 0)
		rc = pthread_create(&thread, &attr, pgparse_thread, (void *) handle);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return rc;
	return pthread_join(thread, NULL);
}
