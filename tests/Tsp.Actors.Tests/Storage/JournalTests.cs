using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.TestKit.Xunit2;
using Tsp.Actors.Hosting;
using Tsp.Actors.Storage;
using Tsp.Tests.Shared;

namespace Tsp.Actors.Tests.Storage;

/// <summary>TSP's journals and snapshot stores (group commit on a SQLite file, on PostgreSQL), driven
/// by persistent actors as Akka uses them.</summary>
public abstract class JournalTests : TestKit
{
    private readonly Config _config;

    protected JournalTests(Config journal)
        : base(journal.WithFallback(TestTiming.Config), "journal-tests") =>
        _config = journal.WithFallback(TestTiming.Config);

    /// <summary>The SQLite journal gathers deletes for a while before it writes them.</summary>
    private static readonly TimeSpan DeleteWait = SqliteJournal.DeleteEvery + TimeSpan.FromSeconds(10);

    [Fact]
    public void Events_come_back_in_order_after_a_restart_of_the_actor_and_of_the_actor_system()
    {
        var recorder = Sys.ActorOf(Recorder.Props("orders"));
        foreach (var e in new[] { "a", "b", "c" })
        {
            recorder.Tell(e, TestActor);
            ExpectMsg("ok:" + e);
        }

        Watch(recorder);
        Sys.Stop(recorder);
        ExpectTerminated(recorder);
        Sys.ActorOf(Recorder.Props("orders")).Tell(Recorder.Get.Instance, TestActor);
        Assert.Equal(["a", "b", "c"], ExpectMsg<string[]>());

        // Another system on the same journal: everything was committed, not only cached.
        using var second = ActorSystem.Create("journal-tests-second", _config);
        var probe = CreateTestProbe(second);
        second.ActorOf(Recorder.Props("orders")).Tell(Recorder.Get.Instance, probe);
        Assert.Equal(["a", "b", "c"], probe.ExpectMsg<string[]>());
    }

    [Fact]
    public void Many_actors_persisting_at_once_share_transactions_and_every_event_is_recovered_in_its_own_order()
    {
        var ids = Enumerable.Range(0, 40).Select(i => $"many-{i}").ToList();
        var recorders = ids.Select(id => Sys.ActorOf(Recorder.Props(id))).ToList();
        for (var n = 0; n < 25; n++)
        {
            foreach (var recorder in recorders)
            {
                recorder.Tell($"e{n}", TestActor);
            }
        }

        ReceiveN(ids.Count * 25, TimeSpan.FromSeconds(30));
        foreach (var id in ids)
        {
            Sys.ActorOf(Recorder.Props(id)).Tell(Recorder.Get.Instance, TestActor);
            Assert.Equal(Enumerable.Range(0, 25).Select(n => $"e{n}"), ExpectMsg<string[]>());
        }
    }

    [Fact]
    public void Deleted_events_are_not_replayed_and_sequence_numbers_go_on_after_a_delete()
    {
        var recorder = Sys.ActorOf(Recorder.Props("deletes"));
        foreach (var e in new[] { "a", "b", "c" })
        {
            recorder.Tell(e, TestActor);
            ExpectMsg("ok:" + e);
        }

        recorder.Tell(new Recorder.DeleteUpTo(long.MaxValue), TestActor);
        ExpectMsg<DeleteMessagesSuccess>(DeleteWait);
        recorder.Tell("d", TestActor);
        ExpectMsg("ok:d");

        Sys.ActorOf(Recorder.Props("deletes")).Tell(Recorder.Get.Instance, TestActor);
        Assert.Equal(["d"], ExpectMsg<string[]>());
        Sys.ActorOf(Recorder.Props("deletes")).Tell(Recorder.GetSequenceNr.Instance, TestActor);
        Assert.Equal(4L, ExpectMsg<long>());
    }

    [Fact]
    public void Deletes_of_many_actors_asked_together_each_take_effect_and_each_keeps_its_sequence_numbers()
    {
        string[] written = ["a", "b", "c"];
        var ids = Enumerable.Range(0, 6).Select(i => $"deletes-together-{i}").ToList();
        var recorders = ids.Select(id => Sys.ActorOf(Recorder.Props(id))).ToList();
        for (var i = 0; i < ids.Count; i++)
        {
            foreach (var e in written)
            {
                recorders[i].Tell(e, TestActor);
                ExpectMsg("ok:" + e);
            }
        }

        // Actor i deletes up to i (0: nothing, 3: all three); from 4 on, everything (long.MaxValue).
        for (var i = 0; i < ids.Count; i++)
        {
            recorders[i].Tell(new Recorder.DeleteUpTo(i < 4 ? i : long.MaxValue), TestActor);
        }

        for (var i = 0; i < ids.Count; i++)
        {
            ExpectMsg<DeleteMessagesSuccess>(DeleteWait);
        }

        for (var i = 0; i < ids.Count; i++)
        {
            Sys.ActorOf(Recorder.Props(ids[i])).Tell(Recorder.Get.Instance, TestActor);
            Assert.Equal(written.Skip(Math.Min(i, 3)), ExpectMsg<string[]>());
            Sys.ActorOf(Recorder.Props(ids[i])).Tell(Recorder.GetSequenceNr.Instance, TestActor);
            Assert.Equal(3L, ExpectMsg<long>());
        }
    }

    [Fact]
    public void An_event_that_cannot_be_serialized_is_rejected_alone_and_the_actor_goes_on()
    {
        var recorder = Sys.ActorOf(Recorder.Props("rejects"));
        recorder.Tell("a", TestActor);
        ExpectMsg("ok:a");
        recorder.Tell(new Unserializable(), TestActor);
        Assert.StartsWith("rejected:", ExpectMsg<string>(), StringComparison.Ordinal);
        recorder.Tell("b", TestActor);
        ExpectMsg("ok:b");

        Sys.ActorOf(Recorder.Props("rejects")).Tell(Recorder.Get.Instance, TestActor);
        Assert.Equal(["a", "b"], ExpectMsg<string[]>());
    }

    [Fact]
    public void A_write_the_journal_refuses_fails_alone_and_the_writes_around_it_are_committed()
    {
        // Two actors with one persistence id both write sequence number 1: the journal refuses one.
        var (first, second) = (Sys.ActorOf(Recorder.Props("twice")), Sys.ActorOf(Recorder.Props("twice")));
        var beside = Enumerable.Range(0, 10).Select(i => Sys.ActorOf(Recorder.Props($"beside-{i}"))).ToList();
        foreach (var recorder in beside.Prepend(second).Prepend(first))
        {
            recorder.Tell(Recorder.Get.Instance, TestActor);
            ExpectMsg<string[]>();
        }

        Watch(first);
        Watch(second);
        first.Tell("x", TestActor);
        second.Tell("y", TestActor);
        beside.ForEach(r => r.Tell("z", TestActor));

        var replies = ReceiveN(12, TimeSpan.FromSeconds(30));
        Assert.Equal(10, replies.Count(r => r is "ok:z"));
        Assert.Single(replies, r => r is "ok:x" or "ok:y");
        Assert.Single(replies, r => r is Terminated);
        for (var i = 0; i < beside.Count; i++)
        {
            Sys.ActorOf(Recorder.Props($"beside-{i}")).Tell(Recorder.Get.Instance, TestActor);
            Assert.Equal(["z"], ExpectMsg<string[]>());
        }
    }

    [Fact]
    public void Recovery_starts_from_the_latest_snapshot_and_replays_only_the_events_after_it()
    {
        var recorder = Sys.ActorOf(Recorder.Props("snapshots"));
        foreach (var e in new[] { "a", "b" })
        {
            recorder.Tell(e, TestActor);
            ExpectMsg("ok:" + e);
        }

        recorder.Tell(Recorder.Snapshot.Instance, TestActor);
        ExpectMsg<SaveSnapshotSuccess>();
        recorder.Tell("c", TestActor);
        ExpectMsg("ok:c");

        Sys.ActorOf(Recorder.Props("snapshots")).Tell(Recorder.Get.Instance, TestActor);
        // The snapshot holds [a, b] marked as such; "c" is the only replayed event.
        Assert.Equal(["snapshot:a", "snapshot:b", "c"], ExpectMsg<string[]>());
    }

    /// <summary>An event whose serialization throws.</summary>
    public sealed class Unserializable
    {
        public string Reason { get; } = "not serializable";

        public string Value => throw new InvalidOperationException(Reason);
    }

    private sealed class Recorder : ReceivePersistentActor
    {
        private readonly List<string> _events = [];
        private IActorRef _replyTo = ActorRefs.Nobody;

        public Recorder(string persistenceId)
        {
            PersistenceId = persistenceId;
            Recover<SnapshotOffer>(offer => _events.AddRange(((string[])offer.Snapshot).Select(e => "snapshot:" + e)));
            Recover<string>(_events.Add);
            Command<string>(e => Persist(e, persisted =>
            {
                _events.Add(persisted);
                Sender.Tell("ok:" + persisted);
            }));
            Command<Unserializable>(e =>
            {
                _replyTo = Sender;
                Persist(e, _ => { });
            });
            Command<Get>(_ => Sender.Tell(_events.ToArray()));
            Command<GetSequenceNr>(_ => Sender.Tell(LastSequenceNr));
            Command<DeleteUpTo>(d =>
            {
                _replyTo = Sender;
                DeleteMessages(d.To);
            });
            Command<DeleteMessagesSuccess>(s => _replyTo.Tell(s));
            Command<Snapshot>(_ =>
            {
                _replyTo = Sender;
                SaveSnapshot(_events.ToArray());
            });
            Command<SaveSnapshotSuccess>(s => _replyTo.Tell(s));
        }

        public override string PersistenceId { get; }

        public static Props Props(string persistenceId) => Akka.Actor.Props.Create(() => new Recorder(persistenceId));

        protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr) =>
            _replyTo.Tell("rejected:" + cause.Message);

        public sealed record Get
        {
            public static readonly Get Instance = new();
        }

        public sealed record GetSequenceNr
        {
            public static readonly GetSequenceNr Instance = new();
        }

        public sealed record Snapshot
        {
            public static readonly Snapshot Instance = new();
        }

        public sealed record DeleteUpTo(long To);
    }
}

public sealed class SqliteJournalTests() : JournalTests(ConfigurationFactory.ParseString(TspHostingExtensions.SqliteJournalHocon(TestServers.TempSqlitePath())));

public sealed class PostgresJournalTests() : JournalTests(ConfigurationFactory.ParseString(TspHostingExtensions.PostgresJournalHocon(TestServers.CreatePostgresDatabaseAsync().GetAwaiter().GetResult())));
