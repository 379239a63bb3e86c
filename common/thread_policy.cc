// See thread_policy.h.
#include "common/thread_policy.h"

#include <pthread.h>
#include <sched.h>

namespace esad {

int run_as_background_thread() {
    sched_param param{};
    return pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
}

}  // namespace esad
