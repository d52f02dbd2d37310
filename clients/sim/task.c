/*
 * task.c: the table of tasks and the name lookup helper their bind() functions share.
 */
#include "task.h"

#include <stdio.h>
#include <string.h>

#include "errbuf.h"

extern const sim_task_t sim_task_cartpole_swingup, sim_task_cartpole_balance,
    sim_task_pendulum_swingup, sim_task_reacher_easy, sim_task_cheetah_run;

const sim_task_t *const sim_tasks[] = {
    &sim_task_cartpole_swingup, &sim_task_cartpole_balance, &sim_task_pendulum_swingup,
    &sim_task_reacher_easy,     &sim_task_cheetah_run,      NULL,
};

const sim_task_t *sim_task_find(const char *name)
{
    for (int i = 0; name && sim_tasks[i]; i++)
        if (strcmp(sim_tasks[i]->name, name) == 0)
            return sim_tasks[i];
    return NULL;
}

int sim_task_lookup(sim_world_t *w, int slot, int type, const char *name, char *err, int errlen)
{
    int id = mj_name2id(w->m, type, name);
    if (id < 0) {
        errbuf_set(err, (size_t)errlen, "the model has no %s '%s'", mju_type2Str(type), name);
        return -1;
    }
    w->id[slot] = id;
    return 0;
}
