using Tsp.Actors.Nodes;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>How a worker lends one queue's slots to the routees of several orchestrators.</summary>
public sealed class SlotLedgerTests
{
    private static Dictionary<string, int> Shares(IEnumerable<(string Routee, int Slots)> told) =>
        told.GroupBy(t => t.Routee).ToDictionary(g => g.Key, g => g.Last().Slots);

    [Fact]
    public void Idle_orchestrators_split_one_deployment_evenly_and_a_second_one_adds_no_slots()
    {
        var ledger = new SlotLedger<string>(servedSlots: null);
        Assert.Equal(new Dictionary<string, int> { ["a"] = 8 }, Shares(ledger.Add("a", "orch-1", 8)));
        ledger.Acknowledged("a", 8);

        var told = Shares(ledger.Add("b", "orch-2", 8));
        Assert.Equal(8, ledger.Capacity);
        Assert.Equal(4, told["a"]);
        Assert.Equal(0, told["b"]); // nothing before a's queue hears that a gave up half
        Assert.Equal(new Dictionary<string, int> { ["b"] = 4 }, Shares(ledger.Acknowledged("a", 4)));
    }

    [Fact]
    public void A_new_routee_is_told_its_share_even_when_it_is_none()
    {
        var ledger = new SlotLedger<string>(servedSlots: 1);
        ledger.Add("a", "orch-1", 8);
        ledger.Acknowledged("a", 1);

        Assert.Equal(new Dictionary<string, int> { ["b"] = 0 }, Shares(ledger.Add("b", "orch-2", 8)));
    }

    [Fact]
    public void Configured_slots_replace_the_deployment_and_an_unserved_queue_gets_none()
    {
        var served = ServedQueues.Parse(["gpu-model=2", "gpu-ocr"]);
        var model = new SlotLedger<string>(served.SlotsFor("gpu-model"));
        var ocr = new SlotLedger<string>(served.SlotsFor("gpu-ocr"));
        var other = new SlotLedger<string>(served.SlotsFor("gpu-other"));

        Assert.Equal(2, Shares(model.Add("m", "orch-1", 8))["m"]);
        Assert.Equal(8, Shares(ocr.Add("o", "orch-1", 8))["o"]);
        Assert.Equal(0, Shares(other.Add("x", "orch-1", 8))["x"]);
        Assert.Equal(0, other.Capacity);
    }

    [Theory]
    [InlineData("gpu-model=0", "at least 1")]
    [InlineData("gpu-model=two", "not 'two'")]
    [InlineData("=2", "names no queue")]
    [InlineData("gpu-model,gpu-model=2", "named twice")]
    public void A_malformed_queue_list_is_refused_naming_the_item(string items, string expected)
    {
        var error = Assert.Throws<FormatException>(() => ServedQueues.Parse([items]));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_waiting_queue_borrows_an_idle_ones_slots_once_they_are_free_for_sure()
    {
        var ledger = new SlotLedger<string>(servedSlots: 4);
        ledger.Add("a", "orch-1", 4);
        ledger.Acknowledged("a", 4);
        ledger.Add("b", "orch-2", 4);
        ledger.Acknowledged("a", 2);
        ledger.Acknowledged("b", 2);
        ledger.CountTask("a", 1);
        ledger.CountTask("a", 1);

        // b's queue waits: a is told to give up its share, but runs two tasks, so b may not have them yet.
        var told = Shares(ledger.SetWaiting("b", true));
        Assert.Equal(0, told["a"]);
        Assert.Equal(2, ledger.ShareOf("b"));
        Assert.Empty(ledger.Acknowledged("a", 0));

        Assert.Equal(new Dictionary<string, int> { ["b"] = 3 }, Shares(ledger.CountTask("a", -1)));
        Assert.Equal(new Dictionary<string, int> { ["b"] = 4 }, Shares(ledger.CountTask("a", -1)));
    }

    [Fact]
    public void A_share_given_up_stays_claimed_until_the_queue_acknowledges_it()
    {
        var ledger = new SlotLedger<string>(servedSlots: 4);
        ledger.Add("a", "orch-1", 4);
        ledger.Acknowledged("a", 4);
        ledger.Add("b", "orch-2", 4);

        ledger.SetWaiting("b", true);
        Assert.Equal(0, ledger.ShareOf("a"));
        Assert.Equal(0, ledger.ShareOf("b"));
        Assert.Equal(0, ledger.Unclaimed);

        Assert.Equal(new Dictionary<string, int> { ["b"] = 4 }, Shares(ledger.Acknowledged("a", 0)));
    }

    [Fact]
    public void Orchestrators_that_both_wait_split_the_slots_evenly_whatever_their_routee_counts()
    {
        var ledger = new SlotLedger<string>(servedSlots: 6);
        ledger.Add("a1", "orch-1", 3);
        ledger.Add("a2", "orch-1", 3);
        ledger.Add("b", "orch-2", 6);
        foreach (var routee in new[] { "a1", "a2", "b" })
        {
            ledger.Acknowledged(routee, ledger.ShareOf(routee));
            ledger.SetWaiting(routee, true);
        }

        foreach (var routee in new[] { "a1", "a2", "b" })
        {
            ledger.Acknowledged(routee, ledger.ShareOf(routee));
        }

        Assert.Equal(3, ledger.ShareOf("a1") + ledger.ShareOf("a2"));
        Assert.Equal(3, ledger.ShareOf("b"));
    }

    /// <summary>Orchestrators' queues and a worker's routees exchange shares, acknowledgements and tasks
    /// over ordered channels delivered in a random interleaving. Whatever the order, the worker never
    /// runs more tasks at once than its slots, every task finishes, and saturating queues finish about as
    /// many tasks each, also when there are fewer slots than orchestrators.</summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(2, 2, 1)]
    [InlineData(3, 4, 2)]
    [InlineData(4, 8, 3)]
    [InlineData(5, 3, 3)]
    [InlineData(6, 1, 2)]
    [InlineData(7, 2, 3)]
    public void Under_any_interleaving_the_worker_never_exceeds_its_slots_and_every_queue_progresses(int seed, int slots, int orchestrators)
    {
        var world = new LendingWorld(new Random(seed), slots, orchestrators, routeesPerOrchestrator: 2);
        for (var step = 0; step < 20_000; step++)
        {
            world.Step(addWork: true);
            Assert.True(world.Running <= slots, $"step {step}: {world.Running} tasks run at once on {slots} slots");
        }

        var finishedWhileFlooded = world.Finished.ToArray();
        for (var step = 0; step < 200_000 && world.Unfinished > 0; step++)
        {
            world.Step(addWork: false);
            Assert.True(world.Running <= slots, $"drain step {step}: {world.Running} tasks run at once on {slots} slots");
        }

        Assert.True(world.Unfinished == 0, $"tasks left unfinished: {world.Describe()}");
        if (orchestrators > 1)
        {
            var (least, most) = (finishedWhileFlooded.Min(), finishedWhileFlooded.Max());
            Assert.True(least * 3 >= most, $"finished per orchestrator while all were flooded: {string.Join(", ", finishedWhileFlooded)}");
        }
    }

    private sealed class LendingWorld
    {
        private readonly Random _random;
        private readonly SlotLedger<string> _ledger;
        private readonly List<Routee> _routees = [];
        private readonly int[] _pending;

        public LendingWorld(Random random, int slots, int orchestrators, int routeesPerOrchestrator)
        {
            _random = random;
            _ledger = new SlotLedger<string>(slots);
            _pending = new int[orchestrators];
            Finished = new int[orchestrators];
            for (var o = 0; o < orchestrators; o++)
            {
                for (var r = 0; r < routeesPerOrchestrator; r++)
                {
                    var routee = new Routee($"{o}/{r}", o);
                    _routees.Add(routee);
                    Deliver(_ledger.Add(routee.Name, $"orch-{o}", slots));
                }
            }
        }

        public int[] Finished { get; }

        public int Running => _routees.Sum(r => r.Running);

        public int Unfinished => _pending.Sum() + _routees.Sum(r => r.Outstanding);

        public string Describe() =>
            $"pending {string.Join("/", _pending)}, unclaimed {_ledger.Unclaimed}; " + string.Join("; ", _routees.Select(r =>
                $"{r.Name}: share {_ledger.ShareOf(r.Name)}, believed {r.Believed}, outstanding {r.Outstanding}, running {r.Running}, to routee [{string.Join(",", r.ToRoutee)}], to queue [{string.Join(",", r.ToQueue)}]"));

        public void Step(bool addWork)
        {
            var routee = _routees[_random.Next(_routees.Count)];
            switch (_random.Next(addWork ? 4 : 3))
            {
                case 0 when routee.ToRoutee.TryDequeue(out var message):
                    switch (message)
                    {
                        case Message.Task:
                            routee.Running++;
                            Deliver(_ledger.CountTask(routee.Name, 1));
                            break;
                        case Message.Ack ack:
                            Deliver(_ledger.Acknowledged(routee.Name, ack.Slots));
                            break;
                        case Message.Waiting waiting:
                            Deliver(_ledger.SetWaiting(routee.Name, waiting.Is));
                            break;
                    }

                    break;
                case 1 when routee.ToQueue.TryDequeue(out var message):
                    switch (message)
                    {
                        case Message.Ready ready:
                            routee.Believed = ready.Slots;
                            routee.ToRoutee.Enqueue(new Message.Ack(ready.Slots));
                            break;
                        case Message.Done:
                            routee.Outstanding--;
                            Finished[routee.Orchestrator]++;
                            break;
                    }

                    Dispatch(routee.Orchestrator);
                    break;
                case 2 when routee.Running > 0:
                    routee.Running--;
                    Deliver(_ledger.CountTask(routee.Name, -1));
                    routee.ToQueue.Enqueue(new Message.Done());
                    break;
                case 3 when _pending[routee.Orchestrator] < 20:
                    // Enough to keep every queue waiting for slots, not a backlog the drain takes ages on.
                    _pending[routee.Orchestrator] += _random.Next(1, 4);
                    Dispatch(routee.Orchestrator);
                    break;
            }
        }

        /// <summary>The orchestrator's queue: each routee gets tasks up to the share the queue believes.</summary>
        private void Dispatch(int orchestrator)
        {
            var mine = _routees.Where(r => r.Orchestrator == orchestrator).ToList();
            foreach (var routee in mine)
            {
                while (_pending[orchestrator] > 0 && routee.Outstanding < routee.Believed)
                {
                    _pending[orchestrator]--;
                    routee.Outstanding++;
                    routee.ToRoutee.Enqueue(new Message.Task());
                }
            }

            var waiting = _pending[orchestrator] > 0;
            foreach (var routee in mine.Where(r => r.ToldWaiting != waiting))
            {
                routee.ToldWaiting = waiting;
                routee.ToRoutee.Enqueue(new Message.Waiting(waiting));
            }
        }

        private void Deliver(IReadOnlyList<(string Routee, int Slots)> shares)
        {
            foreach (var (name, slots) in shares)
            {
                _routees.Single(r => r.Name == name).ToQueue.Enqueue(new Message.Ready(slots));
            }
        }

        private sealed class Routee(string name, int orchestrator)
        {
            public string Name { get; } = name;

            public int Orchestrator { get; } = orchestrator;

            public Queue<Message> ToRoutee { get; } = new();

            public Queue<Message> ToQueue { get; } = new();

            public int Believed { get; set; }

            public int Outstanding { get; set; }

            public int Running { get; set; }

            public bool ToldWaiting { get; set; }
        }
    }

    private abstract record Message
    {
        public sealed record Task : Message;

        public sealed record Done : Message;

        public sealed record Ready(int Slots) : Message;

        public sealed record Ack(int Slots) : Message;

        public sealed record Waiting(bool Is) : Message;
    }
}
