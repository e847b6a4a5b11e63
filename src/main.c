/* main.c - placeholder until the daemon shell lands. */
#include <stdio.h>
int main(void)
{
    puts("chcp-api");
    return 0;
}
