"""Scenario catalogue for the template writer: slot fillers and turn templates.

Four scenarios (OmniChat / ShareChatX): ``chitchat`` (everyday topics), ``emotion`` (the user
expresses one of 7 emotions, the assistant answers in a fitting style), ``event`` (a sound
happens in the user's room and the talk is about it), ``music`` (a music bed plays under the
user and the talk is about it). Templates use ``{slot}`` fields filled from :data:`SLOTS`.
Numbers are written as words so that ASR-based QC compares like with like.
"""
from __future__ import annotations

SLOTS: dict[str, tuple[str, ...]] = {
    "activity": ("hiking", "baking bread", "learning the guitar", "painting", "running", "gardening", "swimming",
                 "knitting", "rock climbing", "cycling to work", "learning Spanish", "playing chess", "writing a novel",
                 "taking photos", "yoga", "cooking curry", "fixing my bike", "birdwatching", "camping", "reading poetry",
                 "building a bookshelf", "practicing piano", "training my puppy", "making pottery", "ice skating",
                 "studying astronomy", "volunteering at the shelter", "brewing coffee", "sewing a jacket",
                 "playing tennis", "meditating", "kayaking", "growing tomatoes", "learning to code", "dancing salsa",
                 "sketching portraits", "surfing", "collecting stamps", "restoring old furniture", "baking cookies"),
    "place": ("the beach", "the mountains", "my grandmother's house", "the city center", "the old library",
              "a small village", "the farmers market", "the lake", "the museum", "the train station", "a quiet cafe",
              "the botanical garden", "the zoo", "my office", "the countryside", "the harbor", "an island",
              "the national park", "the night market", "the stadium", "the science center", "the bakery downtown",
              "the river trail", "a mountain cabin", "the aquarium", "my cousin's apartment", "the art gallery"),
    "food": ("pasta", "a vegetable soup", "pancakes", "sushi", "a lemon cake", "tacos", "roasted chicken", "fried rice",
             "a fresh salad", "dumplings", "pizza", "apple pie", "a mushroom risotto", "banana bread", "noodle soup",
             "grilled fish", "a chocolate tart", "lentil stew", "spring rolls", "a cheese omelette", "corn bread"),
    "person": ("my sister", "my brother", "my best friend", "my neighbor", "my boss", "my roommate", "my dad",
               "my mom", "my coworker", "my grandfather", "my aunt", "my teacher", "an old classmate", "my partner",
               "my little cousin", "the new intern", "my landlord", "my uncle", "my team lead"),
    "time": ("this weekend", "tomorrow morning", "tonight", "next month", "on Friday", "this summer", "next week",
             "later today", "on Sunday afternoon", "over the holidays", "this evening", "in the spring"),
    "thing": ("a new phone", "an old camera", "a bicycle", "a winter coat", "a houseplant", "a laptop",
              "a pair of running shoes", "a board game", "a coffee machine", "a tent", "a guitar", "a desk lamp",
              "a backpack", "a watch", "a sofa", "a telescope", "a rice cooker", "a bookshelf", "an umbrella"),
    "adj": ("wonderful", "relaxing", "exhausting", "surprising", "strange", "lovely", "busy", "peaceful", "fun",
            "tiring", "exciting", "quiet", "chaotic", "memorable", "pleasant", "interesting"),
    "greet": ("Hi.", "Hey there.", "Hello.", "Good morning.", "Good evening.", "Hey.", "Hi there.", "Hello again.",
              "Okay, so.", "Hey, quick question."),
    "ack": ("Sure.", "Of course.", "Absolutely.", "Got it.", "Okay.", "Sounds good.", "I see.", "Right.", "Alright.",
            "That makes sense.", "Good question.", "Oh, nice."),
    "filler": ("um,", "uh,", "well,", "you know,", "hmm,", "so,", "like,", "I mean,"),
    "thanks": ("Thanks, that helps.", "Thank you so much.", "Great, thanks.", "Okay, I will try that.",
               "That is really useful, thanks.", "Perfect, thank you.", "Cool, thanks a lot.",
               "Alright, that sounds like a plan."),
    "bye": ("You are welcome. Have a great day.", "Happy to help. Enjoy!", "Anytime. Good luck with it.",
            "My pleasure. Talk to you soon.", "Glad I could help.", "No problem at all. Take care."),
}

# Chit-chat: topic families; each keeps one topic slot for the whole dialogue. Templates may use
# inline alternations "[a|b|c]" (one drawn per use) on top of {slots}.
CHITCHAT_FAMILIES = {
    "hobby": {
        "user_open": (
            "{greet} I [have been thinking about|want to get into|am curious about|keep hearing about] {activity}. "
            "[Any tips?|Where do I start?|Is it hard?|What do you think?]",
            "{greet} [Do you think|Would you say] {activity} is a good hobby for [a beginner|someone busy|me]?",
            "So {person} [wants me to try|keeps talking about|just started] {activity}. [Should I join?|Is it fun?]",
            "{greet} I keep putting off {activity}. How do I [get started|stay motivated|make it a habit]?",
            "{greet} I tried {activity} {time_past} and it was [harder|more fun|more tiring] than I expected."),
        "assistant": (
            "{ack} {activity_cap} is [a great choice|really rewarding|a lovely hobby]. [Start small|Go slowly|Keep it light] "
            "and [enjoy the process|be patient with yourself|have fun with it].",
            "{ack} [Maybe|Perhaps|I would] [begin with|try] a short session {time} and see how it feels.",
            "[Honestly,|To be honest,|In my experience,] {activity} gets [easier|more fun|much better] after the first "
            "[few tries|couple of weeks|handful of sessions].",
            "{ack} [Set|Pick] a small goal for {time}, [then build from there|and tell {person} about it].",
            "That sounds [great|promising|like a good plan]. [You could|Why not] invite {person} along? "
            "[Company|A partner|A friend] makes it [easier to keep going|more fun]."),
        "user_follow": (
            "{filler} what if I only have [an hour|half an hour|a few minutes] a day?",
            "Do I need [any special equipment|to spend a lot of money|lessons] for that?",
            "[And|But] what if I [get bored|give up|am not good at it]?",
            "How [often|long] should I [practice|do it] at the start?",
            "Would it be [better|easier] to [start|do it] with {person}?"),
        "assistant_follow": (
            "[Even|Just] [twenty minutes|a short session] [a few times a week|every other day] is enough [at first|to start].",
            "[Not really.|No, not at first.] [Borrow what you can|Start with the basics] and [upgrade later|see if you like it].",
            "That is [normal|okay|completely fine]. [Take a break|Switch things up] and [come back to it|try again] {time}.",
            "[Consistency|A regular rhythm] matters more than [talent|speed|long sessions]."),
    },
    "trip": {
        "user_open": (
            "{greet} I [want|am planning|would like] to [go to|visit] {place} {time}. [Is that a good idea?|Any advice?]",
            "{greet} Can you help me plan a [relaxing|fun|cheap|quiet] day at {place}?",
            "I had a {adj} day at {place} with {person}.",
            "{greet} {person} and I [might go|are going] to {place} {time}. What should we [bring|do there]?"),
        "assistant": (
            "{ack} {place_cap} is [lovely|beautiful|wonderful] {time}. [Bring water|Pack a snack|Wear comfortable shoes] "
            "and [check the weather|leave early|take a jacket].",
            "That sounds {adj}! What did you [like most|enjoy the most] about {place}?",
            "[I would|You could] [start early|go in the morning], [walk around|explore] {place}, "
            "then [relax|have lunch] [somewhere quiet|by the water|at a cafe].",
            "{ack} [Going with {person} sounds fun.|It is a nice place for {person} too.] "
            "[Plan one main thing|Keep the plan simple] and leave room to wander."),
        "user_follow": (
            "Hmm, and what if the weather is [bad|rainy|too hot]?",
            "[How|When] should we get there?",
            "Is it [crowded|expensive|busy] [on weekends|in the afternoon]?",
            "{filler} do you think {person} would [like|enjoy] it?"),
        "assistant_follow": (
            "[If it rains,|On a rainy day,] [a museum|a cafe|an indoor market] nearby is a [good|nice] backup.",
            "[Leaving early|Going on a weekday] [avoids the crowds|is usually quieter].",
            "[I think so.|Probably!] [Ask them|Check with them] what they [would enjoy most|want to see]."),
    },
    "cooking": {
        "user_open": (
            "{greet} Do you know a [simple|quick|good] way to make {food}?",
            "{greet} {person} and I are [planning|trying] to cook {food} {time}. How should we start?",
            "{greet} My {food} [came out|turned out] [too dry|bland|a bit burnt] [again|last time]. What went wrong?",
            "I want to [surprise|cook for] {person} {time}. Is {food} [a good idea|too hard]?"),
        "assistant": (
            "{ack} For {food}, [prepare|measure] all the ingredients first, then [take it step by step|go slowly].",
            "[{food_cap} is a great choice.|You cannot go wrong with {food}.] [Keep the heat medium|Taste as you go] "
            "and [do not rush it|season at the end].",
            "[That usually means|It often happens when] the heat is too [high|strong]. [Try|Use] a lower heat "
            "[and a bit more time|and check it often].",
            "{ack} [Cook it once before|Do a test run] so {time} goes [smoothly|without stress]."),
        "user_follow": ("[What|Which] [side dish|drink] goes well with it?", "Can I make it [ahead of time|the day before]?",
                        "{filler} how long does it [take|need] [in total|to cook]?", "Is there a [vegetarian|lighter] version?"),
        "assistant_follow": ("[A fresh salad|Some bread|Roasted vegetables] [goes|works] [nicely|well] with it.",
                             "[Yes,|Mostly,] [it keeps well|it even tastes better] [the next day|after a night in the fridge].",
                             "[About|Roughly] [forty minutes|an hour] [in total|from start to finish], [most of it waiting|mostly hands off]."),
    },
    "purchase": {
        "user_open": (
            "{greet} I just bought {thing} and I am not sure I [like|need] it.",
            "{greet} {person} gave me {thing} as a gift. What can I do with it?",
            "{greet} [Should I buy|Is it worth getting] {thing} {time}?"),
        "assistant": (
            "{ack} Give it [a week|a few days]. If you still do not like it, [you can return it|pass it on].",
            "[How nice of {person}!|What a thoughtful gift.] [Try using it|Give it a spot] [every day|somewhere visible] for a while.",
            "[It depends|That depends] on how often you [would use it|need it]. [Make a short list|Think about] what you really need."),
        "user_follow": ("[Is it|Would it be] rude to [return|exchange] a gift?", "What should I [look for|check] before buying?",
                        "{filler} [maybe|what if] I [sell|give] it to {person}?"),
        "assistant_follow": ("[Not if you are kind about it.|It is fine if you are honest.] [Thank them first.|Say thanks first.]",
                             "[Check|Look at] the [reviews|return policy|warranty] and [compare a few|wait for a sale]."),
    },
}
CHITCHAT = {  # flat pools used by other scenarios for generic filler turns
    "assistant": tuple(t for f in CHITCHAT_FAMILIES.values() for t in f["assistant_follow"]),
}

EMOTION = {  # user emotion -> (situations, assistant replies, assistant style (emotion, pitch, speed))
    "happy": (("I just got the job at {place}!", "{person} is coming to visit {time}, I am so excited!",
               "I finally finished {activity_ger} and it turned out {adj}!", "I passed my exam today!",
               "We adopted a puppy {time} and she is adorable!", "My {food} came out perfect on the first try!"),
              ("That is fantastic news! Congratulations!", "Wow, I am so happy for you! You earned it.",
               "That is wonderful! How are you going to celebrate?", "Amazing! Tell me everything."),
              ("happy", "high", "fast")),
    "sad": (("I feel really lonely since {person} moved away.", "My old dog passed away {time_past}.",
             "I did not get the job at {place}. I really wanted it.", "Everything feels heavy today.",
             "I miss the days when we all lived near {place}.", "I failed my driving test again."),
            ("I am so sorry. That sounds really hard.", "That must hurt a lot. I am here if you want to talk.",
             "I am sorry you are going through this. It is okay to feel sad.",
             "That is really painful. Be gentle with yourself today."),
            ("sad", "low", "slow")),
    "angry": (("{person} borrowed {thing} and broke it without saying a word!",
               "I waited an hour at {place} and nobody showed up!", "My flight got cancelled again!",
               "The neighbors were loud all night, I could not sleep at all!",
               "Someone took credit for my work at the meeting!"),
              ("That is really frustrating. You have every right to be upset.",
               "I understand why you are angry. Let us think about what you can do next.",
               "That is not fair at all. Take a deep breath, and we can sort it out together."),
              ("neutral", "low", "slow")),
    "surprised": (("Wait, {person} is getting married {time}?", "I just found an old letter from {person} in my coat!",
                   "There is a huge rainbow over {place} right now!", "I won a raffle, I never win anything!",
                   "My plant grew a flower overnight!"),
                  ("Oh wow, really? That is such a surprise!", "No way! That is incredible.",
                   "What a surprise! How do you feel about it?"),
                  ("surprised", "high", "normal")),
    "fearful": (("I have to give a speech at {place} {time} and I am terrified.",
                 "I heard strange noises outside my window last night.",
                 "I have a doctor appointment {time} and I am scared of the results.",
                 "I think I am lost near {place} and my phone is almost dead."),
                ("That sounds scary. Let us take it one step at a time.",
                 "It is normal to feel afraid. Breathe slowly, you are going to be okay.",
                 "I am here with you. What is the first small thing you can do right now?"),
                ("neutral", "normal", "slow")),
    "disgusted": (("There was a hair in my {food} at the restaurant.", "The fridge at {place} smells horrible.",
                   "Someone left old {food} in the sink for a week.", "I stepped in something gross at {place}."),
                  ("Ugh, that is really unpleasant. I would ask for a replacement.",
                   "Yuck, that sounds awful. A good cleaning will help.",
                   "That is gross. I am sorry you had to deal with that."),
                  ("disgusted", "normal", "normal")),
    "neutral": (("I need to reorganize my schedule for {time}.", "I am trying to decide between {activity} and reading.",
                 "Can you remind me what I should pack for {place}?"),
                ("{ack} Let us make a short list together.", "{ack} It depends on how much energy you have.",
                 "{ack} Start with the essentials and add the rest later."),
                ("neutral", "normal", "normal")),
}
EMOTION_SUPPORT = ("[It is okay|It is fine|It makes sense] to feel [this way|like that]. [Take your time.|I am listening.]",
                   "[Maybe|Perhaps] [talk to|call] {person} about it {time}. [Sharing helps.|It might help.]",
                   "[One small step|A short walk|A glass of water] [can help|might help] [right now|a little].",
                   "[You are not overreacting.|Your feelings are valid.] [Anyone would feel that way.|It is a lot.]",
                   "[If I were you,|In your place,] I would [rest a bit|sleep on it] and [decide|think about it] {time}.")
EMOTION_FOLLOW = ("{filler} I [do not know|have no idea] what to do now.", "Thanks for listening. It helps a little.",
                  "Do you think I am overreacting?", "What would you do in my [place|shoes]?",
                  "I just needed to tell someone.", "Yeah. It is a lot to take in.", "[Should|Would it help if] I talk to {person}?")

EVENTS: dict[str, dict] = {  # tag -> how a person describes it, and fitting assistant advice
    "knock": {"desc": ("someone knocking at the door", "a knock", "knocking"),
              "advice": ("Maybe check who is at the door before you open it.", "It could be a delivery. Go take a look.")},
    "doorbell": {"desc": ("the doorbell", "someone ringing the bell", "the bell at the door"),
                 "advice": ("Someone is at the door. Do you want to pause and answer it?", "That was the doorbell. Go ahead, I will wait.")},
    "phone_ring": {"desc": ("my phone ringing", "a phone ringing", "the phone"),
                   "advice": ("Your phone is ringing. You can take the call, I will be here.", "Sounds like a call. Answer it if it is important.")},
    "dog_bark": {"desc": ("a dog barking", "the dog next door", "barking"),
                 "advice": ("A dog is barking. Maybe it wants to go outside.", "Dogs often bark at noises we cannot hear. Check if it is okay.")},
    "alarm": {"desc": ("an alarm beeping", "the smoke alarm", "a loud beeping"),
              "advice": ("That sounds like an alarm. Please check for smoke first, safety comes first.", "If that is the smoke alarm, check the kitchen right away.")},
    "applause": {"desc": ("people clapping", "applause", "a crowd clapping"),
                 "advice": ("That is applause. Is there a show nearby?", "Sounds like a crowd clapping. Someone must have done well.")},
    "rain": {"desc": ("rain on the window", "the rain", "rain starting"),
             "advice": ("That is rain. Take an umbrella if you go out.", "Sounds like heavy rain. Maybe close the windows.")},
    "siren": {"desc": ("a siren outside", "a police siren", "an ambulance"),
              "advice": ("That is a siren. If you are driving, pull over and let it pass.", "An emergency vehicle is passing. Stay clear of the road.")},
    "car_horn": {"desc": ("a car honking", "a horn outside", "someone honking"),
                 "advice": ("Someone is honking. Maybe your ride is here.", "That is a car horn. Be careful if you are near the street.")},
    "clock_tick": {"desc": ("a clock ticking", "the ticking clock", "ticking"),
                   "advice": ("That is a clock ticking. A quiet room makes it very noticeable.", "If the ticking bothers you, move the clock to another room.")},
    "thunder": {"desc": ("thunder", "a rumble of thunder", "a storm"),
                "advice": ("That is thunder. Stay inside until the storm passes.", "A storm is coming. Unplug anything sensitive just in case.")},
    "kettle": {"desc": ("the kettle whistling", "a whistle from the kitchen", "the kettle"),
               "advice": ("Your kettle is whistling. The water is ready for tea.", "That is the kettle. Turn off the stove before you forget.")},
    "bird": {"desc": ("birds singing", "a bird chirping", "birds outside"),
             "advice": ("Those are birds singing. Spring must be close.", "Lovely, birds chirping. It sounds peaceful where you are.")},
    "footsteps": {"desc": ("footsteps", "someone walking upstairs", "steps in the hallway"),
                  "advice": ("Those are footsteps. Is someone else home?", "Sounds like someone walking nearby. Maybe a neighbor.")},
    "typing": {"desc": ("someone typing", "keyboard clicks", "typing"),
               "advice": ("That is typing. Someone is busy at a keyboard.", "Sounds like a keyboard. Working late?")},
    "glass": {"desc": ("glasses clinking", "a glass chime", "a clink"),
              "advice": ("That sounds like glasses clinking. Is there a toast?", "A clink of glass. Careful if something broke.")},
}
EVENT_USER = ("Wait, did you hear that? I think it was {desc}.", "{filler} sorry, what was that? Was that {desc}?",
              "Oh! Hold on, that sounded like {desc}.", "Hmm, I just heard {desc}. What should I do?",
              "Can you tell what that sound was? I think {desc}.", "Sorry, {desc} just startled me.")
EVENT_OPEN = ("{greet} I am at home {time_now} and it is pretty noisy.", "{greet} I am trying to focus on {activity}.",
              "{greet} Let us talk about my plans for {time}.", "{greet} I am making {food} right now.")
EVENT_OPEN_REPLY = ("[Sure,|Of course,|Okay,] I am [listening|here]. [What is on your mind?|Go ahead.|Tell me more.]",
                    "[That sounds busy.|Sounds like a lot going on.] [How can I help?|What do you need?]",
                    "{ack} [Let us|We can] [take it slowly|keep it short]. What [would you like|do you want] to [talk about|do] first?")
EVENT_FOLLOW_REPLY = ("[No problem.|Sure.|Okay.] [We were talking about your plans.|Let us pick up where we left off.]",
                      "[Good.|Great.] [Tell me if it happens again.|Let me know if you hear it again.]",
                      "[It can|That can] happen [in old buildings|in busy neighborhoods|now and then]. Nothing to worry about.")
EVENT_FOLLOW = ("Okay, it stopped now. Where were we?", "Thanks. That was a bit startling.",
                "Right, good idea. I will check.", "Does that happen a lot in old buildings?", "Okay, I am back.")

MUSIC_TEMPO = (("slow", 60, 84), ("moderate", 88, 112), ("fast", 116, 150))
MUSIC_MODES = {"major": ("bright", "cheerful", "happy"), "minor": ("melancholic", "wistful", "moody")}
MUSIC_TIMBRES = {"piano": "a piano", "organ": "an organ", "pluck": "a plucked guitar", "pad": "a soft synth pad",
                 "musicbox": "a music box", "brass": "a brassy synth"}
MUSIC_USER = ("{greet} Can you hear the music [in here|in the background|I am playing]? [What do you think of it?|Do you like it?]",
              "What kind of music is [this|playing] [right now|in the background]?",
              "{filler} this [song|tune|piece] feels {mood}. [Do you agree?|Right?|Is it just me?]",
              "[Is|Would] this music [be good|work] for {activity}?",
              "{greet} I put some music on. Does it sound {mood} to you?",
              "Could you [describe|tell me about] the music [in the background|that is playing]?")
MUSIC_ASSISTANT = ("It sounds like a {tempo_word} piece in a {mode} key, played on {timbre}. [Quite|Rather|Very] {mood}.",
                   "I hear {timbre} at a {tempo_word} tempo, [around|about|roughly] {bpm_words} beats per minute. It feels {mood}.",
                   "[This is|That is] a {mood} [tune|melody|piece] in {key} {mode}, with the sound of {timbre}.",
                   "A {tempo_word}, {mood} melody on {timbre}. [Nice|Good|Great] choice for {activity}.")
MUSIC_FOLLOW = ("Do you know any [songs|pieces] like this?", "Would it be better with [drums|a singer|more bass]?",
                "Should I turn it [up or down|a bit louder]?", "I like the sound of {timbre}. Is it hard to [play|learn]?",
                "Can music really change your mood?", "[Why|How come] does it feel so {mood}?")
MUSIC_ANSWER = ("Music with a {tempo_word} tempo often feels {mood}. Try something similar for {activity}.",
                "{ack} [Learning|Playing] {timbre} [is easy to start|takes some practice], and the {mode} key gives it that {mood} feel.",
                "[Yes,|Definitely,] tempo and key change how we feel. This one is {mood}.",
                "[Mostly the key.|The {mode} key does a lot.] [A|The] {mode} key [tends to sound|usually sounds] {mood}.")

BACKCHANNELS = ("mm-hm", "yeah", "uh-huh", "right", "okay", "I see", "sure", "oh", "yes", "mm")
INTERJECTIONS = ("Sorry to cut in,", "Wait, wait,", "Hold on,", "Sorry, but", "Actually,", "Oh, one second,",
                 "Hang on,", "Sorry to interrupt,")
NUM_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen").split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """0 <= n < 1000 as English words (for tempos in scripts)."""
    if n < 20:
        return NUM_WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + NUM_WORDS[n % 10])
    rest = n % 100
    return NUM_WORDS[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
